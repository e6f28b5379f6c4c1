#include "shared/service.h"

#include <signal.h>

#include <cctype>
#include <chrono>
#include <iostream>

#include "bulwark/v1/common.pb.h"
#include "shared/log.h"
#include "shared/subjects.h"
#include "shared/util.h"

namespace bulwark {

void add_common_options(Flags& flags, CommonOptions& o) {
  flags.text("nats-url", &o.nats_url, "NATS server URL")
      .choice("log-format", &o.log_format, "log line format", {"text", "json"})
      .choice("log-level", &o.log_level, "least severe level logged", {"trace", "debug", "info", "warn", "error", "critical", "off"})
      .seconds("nats-connect-timeout", &o.nats_connect_timeout_s, "how long to keep retrying the first NATS connect", 0, 3600);
}

Service::Service(std::string name)
    : name_(std::move(name)),
      instance_id_(name_ + "-" + random_hex(4)),
      flags_("bulwark-" + name_, "Bulwark " + name_ + " (flags also read from BULWARK_* environment variables)") {
  add_common_options(flags_, common_);
}

int Service::run(int argc, char** argv, const std::function<std::unique_ptr<Component>(Bus&)>& make) {
  if (int rc = flags_.parse(argc, argv); rc >= 0) return rc;
  try {
    init_logging(name_, parse_log_format(common_.log_format), common_.log_level);
  } catch (const Error& e) {
    std::cerr << "bulwark-" << name_ << ": " << e.what() << "\n";
    return 2;
  }
  // Block the stop signals in every thread (libnats threads inherit the mask) and take them
  // synchronously below with sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto started = std::chrono::steady_clock::now();
  try {
    auto bus = Bus::connect({common_.nats_url, "bulwark-" + name_,
                             std::chrono::milliseconds(static_cast<int64_t>(common_.nats_connect_timeout_s * 1000))});
    auto component = make(*bus);
    // Health answers only once the component is up, so "healthy" means "ready to work".
    auto health = bus->serve<v1::HealthRequest, v1::HealthReply>(
        subjects::health(name_), "", [&](const v1::HealthRequest&) {
          v1::HealthReply r;
          r.set_service(name_);
          r.set_instance_id(instance_id_);
          r.set_version(kVersion);
          r.set_status("ok");
          r.set_uptime_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - started).count());
          return r;
        });
    spdlog::info("bulwark-{} {} started ({}), NATS {}", name_, kVersion, instance_id_, common_.nats_url);
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("received {}, stopping", strsignal(sig));
    if (component) component->stop();
    bus->drain();
    component.reset();
    spdlog::info("stopped");
    return 0;
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return 1;
  }
}

NotImplemented::NotImplemented(Bus& bus, const std::vector<std::string>& subjects, const std::string& queue,
                               const std::string& what) {
  for (const auto& s : subjects) {
    auto h = [&bus, s, what](Msg& m) {
      bus.respond_error(m, Error(Code::kUnimplemented, s + " is not implemented yet: " + what));
    };
    subs_.push_back(queue.empty() ? bus.subscribe(s, h) : bus.queue_subscribe(s, queue, h));
  }
}

}  // namespace bulwark

namespace bulwark {
int run_pending_driver(int argc, char** argv, const std::string& kind, const std::string& what) {
  Service svc("driver-" + kind);
  std::string driver_id = kind + "-" + hostname();
  svc.flags().text("driver-id", &driver_id, "this driver's id (a NATS subject token)");
  return svc.run(argc, argv, [&](Bus& bus) {
    for (char& c : driver_id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!is_subject_token(driver_id))
      throw Error(Code::kInvalidArgument, "--driver-id '" + driver_id + "' may hold only a-z, 0-9, '-' and '_'", "driver_id");
    return std::make_unique<NotImplemented>(bus, std::vector<std::string>{"bulwark.driver." + driver_id + ".>"}, "", what);
  });
}
}  // namespace bulwark
