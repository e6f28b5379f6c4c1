#include "shared/service.h"

#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <iostream>
#include <optional>
#include <thread>

#include "bulwark/v1/common.pb.h"
#include "shared/log.h"
#include "shared/metrics_listener.h"
#include "shared/subjects.h"
#include "shared/util.h"

namespace bulwark {

void add_common_options(Flags& flags, CommonOptions& o) {
  flags.text("nats-url", &o.nats_url, "NATS server URL")
      .choice("log-format", &o.log_format, "log line format", {"text", "json"})
      .choice("log-level", &o.log_level, "least severe level logged", {"trace", "debug", "info", "warn", "error", "critical", "off"})
      .seconds("nats-connect-timeout", &o.nats_connect_timeout_s, "how long to keep retrying the first NATS connect", 0, 3600)
      .text("nats-creds", &o.nats_creds, "NATS user credentials: a .creds file (or its text); default: none")
      .text("nats-ca", &o.nats_ca, "CA certificate (PEM file, or its text) to connect to NATS over TLS with; default: plain TCP unless the URL is tls://");
}

Service::Service(std::string name)
    : name_(std::move(name)),
      instance_id_(name_ + "-" + random_hex(4)),
      flags_("bulwark-" + name_, "Bulwark " + name_ + " (flags also read from BULWARK_* environment variables)") {
  add_common_options(flags_, common_);
  // Daemons only: the supervisor shares the other common flags but lives in a sandbox, without a listener.
  flags_.text("metrics-listen", &common_.metrics_listen,
              "HOST:PORT serving Prometheus /metrics, /readyz and /livez without a token (bind a private address; default: off)");
}

int Service::run(int argc, char** argv, const std::function<std::unique_ptr<Component>(Bus&)>& make) {
  if (int rc = flags_.parse(argc, argv); rc >= 0) return rc;
  try {
    init_logging(name_, parse_log_format(common_.log_format), common_.log_level);
    if (!common_.metrics_listen.empty()) metrics::parse_listen(common_.metrics_listen);  // a bad value is a flag error
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
  process_metrics_ = metrics::register_process_metrics(metrics::registry(), name_, kVersion);
  auto& nats_up = metrics::registry().gauge("bulwark_nats_connected", "1 while the NATS connection is up.").get();
  nats_metric_ = metrics::registry().add_collector([this, &nats_up] {
    std::lock_guard lock(live_mu_);
    nats_up.set(bus_ && bus_->connected() ? 1 : 0);
  });
  try {
    // Declared before the listener, so that on every way out it stops before what it looks at goes.
    std::unique_ptr<Bus> bus;
    std::unique_ptr<Component> component;
    // Up before NATS, so /livez answers and /readyz says why not while the first connect retries.
    std::optional<MetricsListener> listener;
    if (!common_.metrics_listen.empty()) listener.emplace(common_.metrics_listen, [this] { return not_ready(); });
    bus = Bus::connect({common_.nats_url, "bulwark-" + name_,
                        std::chrono::milliseconds(static_cast<int64_t>(common_.nats_connect_timeout_s * 1000)),
                        common_.nats_creds, common_.nats_ca, ""});
    {
      std::lock_guard lock(live_mu_);
      bus_ = bus.get();
    }
    component = make(*bus);
    {
      std::lock_guard lock(live_mu_);
      component_ = component.get();
      phase_.clear();
    }
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
    {
      std::lock_guard lock(live_mu_);
      phase_ = "stopping";
    }
    if (component) component->stop();
    bus->drain();
    listener.reset();
    {
      std::lock_guard lock(live_mu_);
      bus_ = nullptr;
      component_ = nullptr;
    }
    component.reset();
    spdlog::info("stopped");
    return 0;
  } catch (const std::exception& e) {
    {
      std::lock_guard lock(live_mu_);
      bus_ = nullptr;
      component_ = nullptr;
    }
    spdlog::critical("cannot start: {}", e.what());
    return 1;
  }
}

std::string Service::not_ready() {
  std::string why;
  {
    std::lock_guard lock(live_mu_);
    if (!phase_.empty()) return "service: " + phase_ + "\n";
    if (!bus_ || !bus_->connected()) why += "nats: not connected to " + common_.nats_url + "\n";
    if (component_) {
      try {
        if (std::string c = component_->not_ready(); !c.empty()) why += name_ + ": " + c + "\n";
      } catch (const std::exception& e) {
        why += name_ + ": " + e.what() + "\n";
      }
    }
  }
  return why + readiness_.failures();
}

}  // namespace bulwark

