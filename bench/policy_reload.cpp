// How long `policy set --wait` takes on a live sandbox: a bulwark.policy.set request with wait_ms,
// from sending it until policy-service replies that the sandbox's supervisor enforces the new
// version (stored in JetStream KV -> the supervisor's watch -> compile -> swap into the egress
// proxy -> ack -> reply). Next to it, measured in the same run and interleaved with it: a plain
// bulwark.policy.get round trip to the same policy-service (the baseline), and a set without
// wait (storing alone). For reference it also times a bare NATS request/reply to a responder in
// this process, replying the way Bus does (through libnats' flusher thread) and with SendAsap.
//
// The parts are real: nats-server -js, bulwark-policy-service, and bulwark-supervisor confining
// `sleep 600` (namespaces, veth, nftables, Landlock, seccomp, egress proxy: it must run as root).
// The gateway is left out: the CLI's `policy set --wait` is one REST call that the gateway turns
// into this same NATS request. Usage: bench_policy_reload [iterations]   (default 100)
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "bulwark/v1/policy.pb.h"
#include "shared/bus.h"
#include "shared/process.h"
#include "shared/subjects.h"
#include "shared/util.h"
#include "tests/support/support.h"

extern char** environ;

using namespace bulwark;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr int kWarmup = 5;

// The static sections never change; only the endpoint's port does, from version to version.
std::string policy_yaml(int port) {
  return "version: 1\n"
         "filesystem_policy:\n"
         "  read_only: [/usr, /lib, /lib64, /bin, /etc, /proc]\n"
         "  read_write: [/tmp, /dev/null]\n"
         "network_policies:\n"
         "  bench:\n"
         "    endpoints:\n"
         "      - { host: api.example.com, port: " + std::to_string(port) + ", protocol: rest, access: read-only }\n"
         "    binaries: [{ path: /usr/bin/curl }]\n";
}

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
}

// The versions the supervisor acknowledges (bulwark.policy.ack.<id>), as policy-service sees them.
class Acks {
 public:
  void seen(uint64_t v) {
    std::lock_guard lock(mu_);
    version_ = std::max(version_, v);
    cv_.notify_all();
  }
  bool wait_for(uint64_t v, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return version_ >= v; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t version_ = 0;
};

std::string tail(const std::string& path) {
  std::string s = testing::read_file(path);
  return s.size() > 3000 ? "..." + s.substr(s.size() - 3000) : s;
}

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 100;
  if (n < 1) n = 100;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "bench_policy_reload: run as root (the supervisor builds the sandbox's namespaces)\n");
    return 1;
  }
  try {
    testing::NatsServer nats;
    TempDir dir("bulwark-bench-reload");
    auto bus = Bus::connect({.url = nats.url(), .name = "bench"});
    // The stream the supervisor reports into (the gateway creates it in a full suite).
    bus->ensure_stream(subjects::kSandboxStream, {subjects::kSandboxAll}, std::chrono::hours(1));
    const std::string bin = BULWARK_BIN_DIR;
    Process policy_service = Process::spawn({.argv = {bin + "/bulwark-policy-service", "--nats-url", nats.url(), "--log-level", "warn"},
                                             .output_file = dir.file("policy-service.log")});

    const std::string sid = random_hex(8);
    Acks acks;
    Subscription ack_sub = bus->subscribe(subjects::policy_ack(sid), [&](Msg& m) {
      v1::PolicyAck a;
      if (a.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) acks.seen(a.version());
    });

    int port = 1024;
    auto set = [&](uint32_t wait_ms) {
      v1::PolicySetRequest r;
      r.set_sandbox_id(sid);
      r.set_yaml(policy_yaml(port++));
      r.set_filename("bench.yaml");
      r.set_wait_ms(wait_ms);
      r.set_author("bench");
      return bus->request<v1::PolicyWriteReply>(subjects::policy_op("set"), r, std::chrono::milliseconds(wait_ms) + 5s);
    };

    // Version 1, once policy-service answers (it creates its KV buckets at start).
    v1::PolicyWriteReply first;
    std::string why;
    if (!testing::wait_until(
            [&] {
              try {
                --port;  // the same text until it is stored
                first = set(0);
                return true;
              } catch (const Error& e) {
                why = e.what();
                return false;
              }
            },
            15s))
      throw Error(Code::kUnavailable, "policy-service did not store version 1: " + why + "\n" +
                                          tail(dir.file("policy-service.log")));
    if (first.version() != 1) throw Error(Code::kInternal, "expected version 1, got " + std::to_string(first.version()));

    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    env.push_back("BULWARK_POLICY_YAML=" + policy_yaml(1023));  // the text version 1 holds
    Process supervisor = Process::spawn({.argv = {bin + "/bulwark-supervisor", "--nats-url", nats.url(), "--sandbox-id", sid,
                                                  "--log-level", "info", "--", "sleep", "600"},
                                         .env = env,
                                         .output_file = dir.file("supervisor.log")});
    auto sup_started = Clock::now();
    if (!acks.wait_for(1, 30s))
      throw Error(Code::kUnavailable, "the supervisor did not acknowledge version 1 within 30 s:\n" +
                                          tail(dir.file("supervisor.log")));
    double first_ack_ms = ms_since(sup_started);

    // The floor: a bare NATS request/reply to a responder on another connection of this process.
    auto echo_bus = Bus::connect({.url = nats.url(), .name = "bench-echo"});
    const std::string echo_subject = "bench.echo." + sid;
    Subscription echo_sub = echo_bus->subscribe(echo_subject, [&](Msg& m) {
      if (m.reply()) echo_bus->publish(m.reply(), m.data());
    });
    echo_bus->flush();
    // The same responder on a libnats connection with SendAsap: its reply is written at once
    // instead of by libnats' flusher thread (which yields about 1 ms before flushing).
    const std::string asap_subject = "bench.echo-asap." + sid;
    NatsPtr<natsOptions> asap_opts;
    NatsPtr<natsConnection> asap_nc;
    NatsPtr<natsSubscription> asap_sub;
    {
      natsOptions* o = nullptr;
      check_nats(natsOptions_Create(&o), "nats options");
      asap_opts.reset(o);
      check_nats(natsOptions_SetURL(o, nats.url().c_str()), "nats url");
      check_nats(natsOptions_SetSendAsap(o, true), "send asap");
      natsConnection* nc = nullptr;
      check_nats(natsConnection_Connect(&nc, o), "connect the SendAsap responder");
      asap_nc.reset(nc);
      natsSubscription* sub = nullptr;
      check_nats(natsConnection_Subscribe(
                     &sub, nc, asap_subject.c_str(),
                     [](natsConnection* c, natsSubscription*, natsMsg* m, void*) {
                       if (const char* reply = natsMsg_GetReply(m))
                         natsConnection_Publish(c, reply, natsMsg_GetData(m), natsMsg_GetDataLength(m));
                       natsMsg_Destroy(m);
                     },
                     nullptr),
                 "subscribe the SendAsap responder");
      asap_sub.reset(sub);
      check_nats(natsConnection_FlushTimeout(nc, 2000), "flush");
    }

    v1::PolicyGetRequest get_req;
    get_req.set_sandbox_id(sid);
    std::vector<double> echo_ms, asap_ms, get_ms, set_ms, set_wait_ms;
    int failures = 0;
    uint64_t last_version = 1;
    std::string first_failure;
    for (int i = 0; i < kWarmup + n; ++i) {
      bool record = i >= kWarmup;
      auto t0 = Clock::now();
      bus->request(echo_subject, "ping", 5s);
      double e = ms_since(t0);
      t0 = Clock::now();
      bus->request(asap_subject, "ping", 5s);
      double a = ms_since(t0);

      // Baseline: a request/reply round trip through policy-service (one KV read).
      t0 = Clock::now();
      auto rec = bus->request<v1::PolicyRecord>(subjects::policy_op("get"), get_req, 5s);
      double g = ms_since(t0);
      if (rec.sandbox_id() != sid) throw Error(Code::kInternal, "policy get answered for another sandbox");

      // Storing alone (no wait); then, untimed, let the supervisor catch up before the next.
      t0 = Clock::now();
      auto stored = set(0);
      double s = ms_since(t0);
      if (!acks.wait_for(stored.version(), 15s))
        throw Error(Code::kTimeout, "the supervisor did not acknowledge version " + std::to_string(stored.version()));

      // policy set --wait: stored and enforced.
      t0 = Clock::now();
      auto waited = set(10000);
      double w = ms_since(t0);
      last_version = waited.version();
      if (!waited.acknowledged() || waited.acked_version() < waited.version()) {
        ++failures;
        if (first_failure.empty())
          first_failure = "version " + std::to_string(waited.version()) + ": acked " + std::to_string(waited.acked_version()) +
                          (waited.ack_error().empty() ? "" : " (" + waited.ack_error() + ")");
      }
      if (record) {
        echo_ms.push_back(e);
        asap_ms.push_back(a);
        get_ms.push_back(g);
        set_ms.push_back(s);
        set_wait_ms.push_back(w);
      }
    }

    supervisor.signal(SIGTERM);
    auto code = supervisor.wait_for(15s);
    if (!code) supervisor.stop(1000ms);
    policy_service.stop();

    double b50 = percentile(get_ms, 0.5), b99 = percentile(get_ms, 0.99);
    std::printf("policy_reload (n=%d after %d warm-up rounds, interleaved; sandbox %s, versions 2..%llu)\n", n, kWarmup,
                sid.c_str(), static_cast<unsigned long long>(last_version));
    std::printf("%-52s %9s %9s %8s %8s\n", "", "p50 ms", "p99 ms", "x p50", "x p99");
    auto row = [&](const char* label, const std::vector<double>& v) {
      double p50 = percentile(v, 0.5), p99 = percentile(v, 0.99);
      std::printf("%-52s %9.2f %9.2f %8.1f %8.1f\n", label, p50, p99, p50 / b50, p99 / b99);
    };
    row("baseline: bulwark.policy.get round trip", get_ms);
    row("bulwark.policy.set, no wait (stored)", set_ms);
    row("bulwark.policy.set, wait_ms=10000 (enforced)", set_wait_ms);
    std::printf("for reference, a bare NATS request/reply to a responder in this process:\n");
    row("  replying through libnats' flusher (as Bus does)", echo_ms);
    row("  replying with SendAsap (written at once)", asap_ms);
    std::printf("not acknowledged: %d of %d%s%s\n", failures, kWarmup + n, first_failure.empty() ? "" : "; first: ",
                first_failure.c_str());
    std::printf("supervisor: first ack %.0f ms after spawn; SIGTERM -> exit code %s\n", first_ack_ms,
                code ? std::to_string(*code).c_str() : "none (killed)");
    return failures == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_policy_reload: %s\n", e.what());
    return 1;
  }
}
