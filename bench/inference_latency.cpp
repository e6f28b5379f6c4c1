// What inference.local adds to a model call, next to the same call sent directly to the same
// model server, measured in the same run:
//
//   direct  client -> model server (cpp-httplib, keep-alive)
//   router  supervisor's InferenceClient -> NATS -> bulwark-privacy-router -> model server
//           (what the router and the NATS hop add: stripping, routing, injection, relaying)
//   agent   client -> EgressProxy (CONNECT inference.local, TLS with the sandbox CA, keep-alive)
//           -> InferenceClient -> NATS -> router -> model server: what an agent sees
//
// Per request: a small non-streamed chat completion, timed from sending until the whole body is
// in. Per streamed chunk: the server sends server-sent events 2 ms apart, each carrying the
// steady_clock time it was written (the server runs in this process), and every event's delay is
// its arrival time minus that. Everything runs on loopback: a real nats-server with JetStream, the
// real router binary (its audit events go to JetStream as in production), a stand-in for
// gateway-api answering bulwark.provider.resolve, and the route table in KV inference_routes.
//
// Usage: bench_inference_latency [requests per mode (300)] [streams per mode (30)]
#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bulwark/v1/common.pb.h"
#include "bulwark/v1/inference.pb.h"
#include "shared/bus.h"
#include "shared/error.h"
#include "shared/policy.h"
#include "shared/policy_engine.h"
#include "shared/process.h"
#include "shared/subjects.h"
#include "shared/util.h"
#include "shared/log.h"
#include "supervisor/inference_client.h"
#include "supervisor/proxy/egress_proxy.h"
#include "supervisor/proxy/sandbox_ca.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kChunks = 20;
const char* kChat = R"({"model":"bench-model","messages":[{"role":"user","content":"Say hello"}]})";
const char* kStream = R"({"model":"bench-model","stream":true,"messages":[{"role":"user","content":"Say hello"}]})";

int64_t now_ns() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); }

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

// The arrival delay of every event in `data` ("data: {"t":<ns>}\n\n" ...), appended to out.
void event_delays(const std::string& data, int64_t arrived, std::vector<double>& out) {
  for (size_t at = 0; (at = data.find("\"t\":", at)) != std::string::npos; at += 4)
    out.push_back(static_cast<double>(arrived - std::stoll(data.substr(at + 4))) / 1000.0);
}

// An OpenAI-style model server: a small completion, or kChunks timestamped events.
class ModelServer {
 public:
  ModelServer() {
    server_.Post("/v1/chat/completions", [](const httplib::Request& req, httplib::Response& res) {
      if (req.body.find("\"stream\":true") == std::string::npos) {
        res.set_content(R"({"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}]})",
                        "application/json");
        return;
      }
      auto n = std::make_shared<int>(0);
      res.set_chunked_content_provider("text/event-stream", [n](size_t, httplib::DataSink& sink) {
        if (*n > 0) std::this_thread::sleep_for(2ms);
        if ((*n)++ < kChunks) {
          std::string ev = "data: {\"t\":" + std::to_string(now_ns()) + "}\n\n";
          sink.write(ev.data(), ev.size());
        } else {
          sink.write("data: [DONE]\n\n", 14);
          sink.done();
        }
        return true;
      });
    });
    server_.set_tcp_nodelay(true);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(1ms);
  }
  ~ModelServer() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

// One exchange through any HTTP client: total time and the events' delays.
struct Result {
  double total_us = 0;
  std::vector<double> event_us;
  int status = 0;
};

template <class HttpClient>
Result http_exchange(HttpClient& cli, const char* body) {
  Result r;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.headers = {{"Content-Type", "application/json"}, {"Authorization", "Bearer sk-agent"}};
  req.body = body;
  req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
    event_delays(std::string(d, n), now_ns(), r.event_us);
    return true;
  };
  httplib::Response res;
  httplib::Error err;
  auto t0 = Clock::now();
  if (!cli.send(req, res, err)) throw Error(Code::kUnavailable, "request failed: " + httplib::to_string(err));
  r.total_us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  r.status = res.status;
  return r;
}

// The sink a supervisor's proxy would be: records when each chunk arrived.
class RecordingSink : public proxy::InferenceSink {
 public:
  void head(int status, std::vector<proxy::HeaderField>) override { r.status = status; }
  void chunk(std::string bytes) override { event_delays(bytes, now_ns(), r.event_us); }
  void end(std::string error) override {
    if (!error.empty()) r.status = -1;
    done.set_value();
  }
  void on_cancel(std::function<void()>) override {}
  bool cancelled() const override { return false; }
  Result r;
  std::promise<void> done;
};

Result router_exchange(supervisor::InferenceClient& client, const char* body) {
  proxy::InferenceRequest req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.headers = {{"content-type", "application/json"}, {"authorization", "Bearer sk-agent"}};
  req.body = body;
  auto sink = std::make_shared<RecordingSink>();
  auto done = sink->done.get_future();
  auto t0 = Clock::now();
  client.call(req, sink);
  if (done.wait_for(30s) != std::future_status::ready) throw Error(Code::kTimeout, "router call timed out");
  sink->r.total_us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  return sink->r;
}

struct Series {
  std::string label;
  std::vector<double> total, events;
};

void print(const Series& s, const Series& base, bool events) {
  const auto& v = events ? s.events : s.total;
  const auto& b = events ? base.events : base.total;
  double p50 = percentile(v, 0.5), p99 = percentile(v, 0.99), b50 = percentile(b, 0.5), b99 = percentile(b, 0.99);
  std::printf("  %-52s %9.0f %9.0f %7.2f %7.2f %+9.0f\n", s.label.c_str(), p50, p99, p50 / b50, p99 / b99, p50 - b50);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    int n = argc > 1 ? std::atoi(argv[1]) : 300;
    int streams = argc > 2 ? std::atoi(argv[2]) : 30;
    spdlog::set_level(spdlog::level::warn);
    testing::NatsServer nats;
    ModelServer model;
    auto bus = Bus::connect({nats.url(), "bench-inference"});
    bus->ensure_stream(subjects::kSandboxStream, {subjects::kSandboxAll}, std::chrono::hours(1));
    // gateway-api's part: the provider with its key, and the route table.
    auto resolve = bus->serve<v1::ProviderResolveRequest, v1::Provider>(
        subjects::kProviderResolve, subjects::kGatewayQueue, [&](const v1::ProviderResolveRequest& r) {
          v1::Provider p;
          p.set_name(r.name());
          p.set_type("openai");
          p.set_base_url("http://127.0.0.1:" + std::to_string(model.port()));
          (*p.mutable_credentials())["OPENAI_API_KEY"] = "sk-backend-bench";
          return p;
        });
    auto kv = bus->key_value({.bucket = subjects::kInferenceRoutesBucket});
    v1::InferenceConfig cfg;
    auto* route = cfg.add_routes();
    route->set_match("*");
    auto* be = route->add_backends();
    be->set_provider("bench");
    be->set_privacy("any");
    kv.put(subjects::kInferenceGlobalKey, cfg.SerializeAsString());

    TempDir dir("bulwark-bench-inference");
    auto router = Process::spawn({.argv = {std::string(BULWARK_BIN_DIR) + "/bulwark-privacy-router", "--nats-url", nats.url()},
                                  .output_file = dir.file("router.log")});
    bool up = testing::wait_until([&] {
      try {
        bus->request<v1::HealthReply>(subjects::health("privacy-router"), v1::HealthRequest(), 200ms);
        return true;
      } catch (const Error&) {
        return false;
      }
    }, 10s);
    if (!up) throw Error(Code::kUnavailable, "privacy-router did not start: " + testing::read_file(dir.file("router.log")));

    std::string sandbox_id = random_hex(8);
    supervisor::InferenceClient client(*bus, {.sandbox_id = sandbox_id});

    // The sandbox side: the proxy with the sandbox CA; this process is "the agent".
    auto ca = std::make_shared<proxy::SandboxCa>(proxy::SandboxCa::generate(sandbox_id));
    std::ofstream(dir.file("ca.pem")) << ca->cert_pem();
    proxy::EgressProxy::Options o;
    o.listen_address = "127.0.0.1";
    o.listen_port = 0;
    o.agent_init_pid = ::getpid();
    o.ca = ca;
    o.inference = client.handler();
    auto nothing = policy::CompiledPolicy::compile(policy::parse_policy("version: 1\n", "bench.yaml"));
    proxy::EgressProxy egress(o, nothing, 1, [](const proxy::Event&) {});
    egress.run_in_thread();

    httplib::Client direct("127.0.0.1", model.port());
    direct.set_keep_alive(true);
    direct.set_tcp_nodelay(true);
    httplib::SSLClient agent("inference.local", 443);
    agent.set_proxy("127.0.0.1", egress.port());
    agent.set_ca_cert_path(dir.file("ca.pem").c_str());
    agent.enable_server_certificate_verification(true);
    agent.set_keep_alive(true);
    agent.set_tcp_nodelay(true);
    agent.set_read_timeout(30);

    Series d{"direct to the model server", {}, {}}, r{"InferenceClient -> NATS -> router -> server", {}, {}},
        a{"agent: proxy (TLS) -> NATS -> router -> server", {}, {}};
    auto check = [](const Result& x, const char* what) {
      if (x.status != 200) throw Error(Code::kInternal, std::string(what) + " answered " + std::to_string(x.status));
      return x;
    };
    // Warm-up: connections, TLS, the router's provider cache.
    for (int i = 0; i < 20; ++i) {
      check(http_exchange(direct, kChat), "direct");
      check(router_exchange(client, kChat), "router");
      check(http_exchange(agent, kChat), "agent");
    }
    // Interleaved, so background load hits every mode alike.
    for (int i = 0; i < n; ++i) {
      d.total.push_back(check(http_exchange(direct, kChat), "direct").total_us);
      r.total.push_back(check(router_exchange(client, kChat), "router").total_us);
      a.total.push_back(check(http_exchange(agent, kChat), "agent").total_us);
    }
    for (int i = 0; i < streams; ++i) {
      for (auto* s : {&d, &r, &a}) {
        Result x = s == &r ? router_exchange(client, kStream)
                   : s == &d ? http_exchange(direct, kStream)
                             : http_exchange(agent, kStream);
        check(x, s->label.c_str());
        if (x.event_us.size() != kChunks) throw Error(Code::kInternal, s->label + ": " + std::to_string(x.event_us.size()) + " events");
        s->events.insert(s->events.end(), x.event_us.begin(), x.event_us.end());
      }
    }
    std::printf("inference_latency (loopback; microseconds; %d requests and %d streams of %d events per mode)\n", n,
                streams, kChunks);
    std::printf("  %-52s %9s %9s %7s %7s %9s\n", "", "p50", "p99", "x p50", "x p99", "+p50");
    std::printf("per request (small chat completion, keep-alive)\n");
    for (auto* s : {&d, &r, &a}) print(*s, d, false);
    std::printf("per streamed event (server write -> client read)\n");
    for (auto* s : {&d, &r, &a}) print(*s, d, true);
    router.stop();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_inference_latency: %s\n", e.what());
    return 1;
  }
}
