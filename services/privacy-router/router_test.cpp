// privacy-router end to end over a real nats-server -js: the test plays the supervisor (calls over
// NATS with a reply inbox, straight through libnats) and gateway-api (bulwark.provider.resolve,
// the KV route tables), and real HTTP servers on 127.0.0.1 play the backends.
#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "bulwark/v1/sandbox.pb.h"
#include "services/privacy-router/test_config.h"
#include "services/privacy-router/router.h"
#include "services/privacy-router/test_upstream.h"
#include "shared/subjects.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::privacy_router;
using bulwark::privacy_router::testing::B;
using bulwark::privacy_router::testing::config;
using namespace std::chrono_literals;
using bulwark::privacy_router::testing::Upstream;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kSid = "0123456789abcdef";
const std::string kOpenAiKey = "sk-backend-openai-0123456789";
const std::string kAnthropicKey = "sk-ant-backend-0123456789";
const std::string kCloudKey = "sk-cloud-backend-0123456789";
const std::string kAgentKey = "sk-agent-made-up-key";
const std::string kPrompt = "Say hello, secret-prompt-text";

// What a backend received, for the test to look at.
struct Seen {
  int hits = 0;
  std::string authorization, x_api_key, anthropic_version, host, target, body;
  Clock::time_point last_chunk_sent;
};

class Recorder {
 public:
  void record(const httplib::Request& req) {
    std::lock_guard lock(mu_);
    ++s_.hits;
    s_.authorization = req.get_header_value("Authorization");
    s_.x_api_key = req.get_header_value("x-api-key");
    s_.anthropic_version = req.get_header_value("anthropic-version");
    s_.host = req.get_header_value("Host");
    s_.target = req.target;
    s_.body = req.body;
  }
  void sent_last_chunk() {
    std::lock_guard lock(mu_);
    s_.last_chunk_sent = Clock::now();
  }
  Seen get() {
    std::lock_guard lock(mu_);
    return s_;
  }

 private:
  std::mutex mu_;
  Seen s_;
};

struct Reply {
  int status = 0;
  Headers headers;
  std::string body;
  std::vector<std::pair<std::string, Clock::time_point>> chunks;
  bool ended = false;
  bool seq_ok = true;
  std::string end_error;
  nlohmann::json json() const { return nlohmann::json::parse(body); }
  std::string header(const std::string& name) const {
    const std::string* v = find_header(headers, name);
    return v ? *v : "";
  }
};

// The supervisor's side of the transport.
class Caller {
 public:
  explicit Caller(const std::string& url) {
    natsConnection* nc = nullptr;
    check_nats(natsConnection_ConnectTo(&nc, url.c_str()), "test caller connect");
    nc_.reset(nc);
  }
  Reply call(const std::string& method, const std::string& path, Headers headers, const std::string& body,
             const std::string& sandbox_id = kSid, const std::string& subject_sid = kSid) {
    v1::InferenceCall c;
    c.set_sandbox_id(sandbox_id);
    c.set_call_id("call-" + std::to_string(++n_));
    c.set_method(method);
    c.set_path(path);
    for (auto& [k, v] : headers) {
      auto* h = c.add_headers();
      h->set_name(k);
      h->set_value(v);
    }
    c.set_body(body);
    c.set_binary("/usr/bin/node");
    last_call_id = c.call_id();
    return send(subjects::inference_call(subject_sid), c.SerializeAsString());
  }
  Reply send(const std::string& subject, const std::string& data) {
    natsInbox* inbox = nullptr;
    natsInbox_Create(&inbox);
    std::string reply_to = inbox;
    natsInbox_Destroy(inbox);
    natsSubscription* raw = nullptr;
    check_nats(natsConnection_SubscribeSync(&raw, nc_.get(), reply_to.c_str()), "subscribe inbox");
    NatsPtr<natsSubscription> sub(raw);
    check_nats(natsConnection_PublishRequest(nc_.get(), subject.c_str(), reply_to.c_str(), data.data(),
                                             static_cast<int>(data.size())),
               "publish call");
    Reply r;
    uint64_t want = 0;
    auto deadline = Clock::now() + 15s;
    while (!r.ended && Clock::now() < deadline) {
      natsMsg* m = nullptr;
      if (natsSubscription_NextMsg(&m, sub.get(), 500) != NATS_OK) continue;
      NatsPtr<natsMsg> msg(m);
      auto at = Clock::now();
      v1::InferenceFrame f;
      if (!f.ParseFromArray(natsMsg_GetData(m), natsMsg_GetDataLength(m))) {
        r.seq_ok = false;  // no REQUIRE here: this may run on a thread of the test's own
        continue;
      }
      if (f.seq() != want++) r.seq_ok = false;
      if (f.has_head()) {
        r.status = f.head().status();
        for (const auto& h : f.head().headers()) r.headers.emplace_back(h.name(), h.value());
      } else if (f.kind_case() == v1::InferenceFrame::kChunk) {
        r.body += f.chunk();
        r.chunks.emplace_back(f.chunk(), at);
      } else if (f.has_end()) {
        r.ended = true;
        r.end_error = f.end().error();
      }
    }
    return r;
  }
  std::string last_call_id;

 private:
  NatsPtr<natsConnection> nc_;
  int n_ = 0;
};

Headers agent_headers() {
  return {{"Host", "inference.local"},
          {"Authorization", "Bearer " + kAgentKey},
          {"x-api-key", kAgentKey},
          {"Content-Type", "application/json"},
          {"Accept-Encoding", "gzip"},
          {"Connection", "keep-alive"},
          {"X-Stainless-Lang", "js"}};
}

std::string chat(const std::string& model, bool stream = false) {
  return nlohmann::ordered_json{{"model", model},
                                {"messages", {{{"role", "user"}, {"content", kPrompt}}}},
                                {"stream", stream}}
      .dump();
}


v1::Provider provider(const std::string& name, const std::string& type, const std::string& base_url,
                      std::map<std::string, std::string> creds) {
  v1::Provider p;
  p.set_name(name);
  p.set_type(type);
  p.set_base_url(base_url);
  for (auto& [k, v] : creds) (*p.mutable_credentials())[k] = v;
  return p;
}

struct Env {
  bulwark::testing::NatsServer nats;
  std::unique_ptr<Bus> bus = Bus::connect({nats.url(), "test"});
  KvBucket kv = bus->key_value({.bucket = subjects::kInferenceRoutesBucket});

  Recorder openai_seen, broken_seen, anthropic_seen, cloud_seen, local_seen;
  Upstream openai, broken, anthropic, cloud, local;

  std::mutex mu;
  std::map<std::string, v1::Provider> providers;
  std::map<std::string, int> resolves;
  Subscription gateway;
  std::vector<v1::LogLine> logs;
  Subscription logs_sub;

  std::unique_ptr<Bus> router_bus;
  std::unique_ptr<Router> router;
  std::unique_ptr<Caller> caller;

  Env() {
    bus->ensure_stream(subjects::kSandboxStream, {subjects::kSandboxAll}, std::chrono::hours(1));
    serve_openai();
    broken.srv().Post(R"(/.*)", [this](const httplib::Request& req, httplib::Response& res) {
      broken_seen.record(req);
      res.status = 500;
      res.set_content("internal error at the backend", "text/plain");
    });
    anthropic.srv().Post(R"(/.*)", [this](const httplib::Request& req, httplib::Response& res) {
      anthropic_seen.record(req);
      res.set_content(R"({"type":"message","content":[{"type":"text","text":"hi"}]})", "application/json");
    });
    cloud.srv().Post(R"(/.*)", [this](const httplib::Request& req, httplib::Response& res) {
      cloud_seen.record(req);
      res.set_content(R"({"served_by":"cloud"})", "application/json");
    });
    local.srv().Post(R"(/.*)", [this](const httplib::Request& req, httplib::Response& res) {
      local_seen.record(req);
      res.set_content(R"({"served_by":"local"})", "application/json");
    });
    for (auto* u : {&openai, &broken, &anthropic, &cloud, &local}) u->start();

    set_provider(provider("openai-main", "openai", openai.url() + "/v1", {{"OPENAI_API_KEY", kOpenAiKey}}));
    set_provider(provider("broken", "openai", broken.url(), {{"OPENAI_API_KEY", "sk-broken-0123456789"}}));
    set_provider(provider("anthropic-main", "anthropic", anthropic.url(), {{"ANTHROPIC_API_KEY", kAnthropicKey}}));
    set_provider(provider("cloud", "openai", cloud.url(), {{"OPENAI_API_KEY", kCloudKey}}));
    // A keyless local server, named by host name so that the local-only check resolves it.
    set_provider(provider("local", "generic", local.url("localhost"), {}));
    set_provider(provider("public", "generic", "http://93.184.216.34:9", {}));
    start_gateway();
    logs_sub = bus->subscribe(subjects::sandbox_logs(kSid), [this](Msg& m) {
      v1::LogLine l;
      if (!l.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) return;
      std::lock_guard lock(mu);
      logs.push_back(l);
    });
    bus->flush();
    caller = std::make_unique<Caller>(nats.url());
  }
  ~Env() {
    router.reset();
    router_bus.reset();
  }

  void serve_openai() {
    openai.srv().Post(R"(/.*)", [this](const httplib::Request& req, httplib::Response& res) {
      openai_seen.record(req);
      auto body = nlohmann::json::parse(req.body);
      const std::string model = body["model"];
      if (!body.value("stream", false)) {
        res.set_content(R"({"choices":[{"message":{"content":"hello"}}],"model":")" + model + "\"}", "application/json");
        return;
      }
      res.set_header("x-request-id", "req-1");
      res.set_header("Set-Cookie", "upstream=1");
      auto n = std::make_shared<int>(0);
      const bool stall = model == "stall";
      res.set_chunked_content_provider("text/event-stream", [this, n, stall](size_t, httplib::DataSink& sink) {
        int i = (*n)++;
        if (stall && i == 1) std::this_thread::sleep_for(2s);  // silent mid-stream
        if (i < 5) {
          if (i > 0) std::this_thread::sleep_for(100ms);
          std::string ev = "data: {\"choices\":[{\"delta\":{\"content\":\"w" + std::to_string(i) + "\"}}]}\n\n";
          sink.write(ev.data(), ev.size());
          return true;
        }
        openai_seen.sent_last_chunk();
        sink.write("data: [DONE]\n\n", 14);
        sink.done();
        return true;
      });
    });
  }

  void set_provider(const v1::Provider& p) {
    std::lock_guard lock(mu);
    providers[p.name()] = p;
  }
  void start_gateway() {
    gateway = bus->serve<v1::ProviderResolveRequest, v1::Provider>(
        subjects::kProviderResolve, subjects::kGatewayQueue, [this](const v1::ProviderResolveRequest& r) {
          std::lock_guard lock(mu);
          ++resolves[r.name()];
          auto it = providers.find(r.name());
          if (it == providers.end()) throw Error(Code::kNotFound, "provider " + r.name() + " does not exist", "name");
          return it->second;
        });
    bus->flush();
  }
  int resolved(const std::string& name) {
    std::lock_guard lock(mu);
    return resolves[name];
  }

  void routes(const std::string& key, const v1::InferenceConfig& cfg) { kv.put(key, cfg.SerializeAsString()); }

  void start_router(RouterOptions o = {}) {
    o.forward.connect_timeout = 2s;
    o.forward.first_byte_timeout = 3s;
    if (o.forward.idle_timeout == ForwardOptions{}.idle_timeout) o.forward.idle_timeout = 500ms;
    o.max_request_bytes = 64 * 1024;
    o.shutdown_grace = 1s;
    router_bus = Bus::connect({nats.url(), "router"});
    router = std::make_unique<Router>(*router_bus, o);
  }

  Reply call(const std::string& model, bool stream = false) {
    return caller->call("POST", "/v1/chat/completions", agent_headers(), chat(model, stream));
  }

  // The audit LogLine of a call, waiting for it a little.
  std::optional<v1::LogLine> log_of(const std::string& call_id) {
    std::optional<v1::LogLine> out;
    bulwark::testing::wait_until(
        [&] {
          std::lock_guard lock(mu);
          for (const auto& l : logs)
            if (l.inference().call_id() == call_id) out = l;
          return out.has_value();
        },
        5s);
    return out;
  }
};

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

}  // namespace

TEST_CASE("a streamed chat completion: backend key in, agent key out, model rewritten, chunks as they come") {
  Env env;
  env.routes("global", config("", {{"*", {{"openai-main", "gpt-backend", "any", 1}}}}));
  env.start_router();

  auto t0 = Clock::now();
  Reply r = env.call("gpt-agent", true);
  REQUIRE(r.ended);
  CHECK(r.seq_ok);
  CHECK(r.status == 200);
  CHECK(r.end_error.empty());
  CHECK(r.header("content-type") == "text/event-stream");
  CHECK(r.header("x-request-id") == "req-1");
  CHECK(r.header("set-cookie").empty());
  CHECK(r.header("transfer-encoding").empty());
  CHECK(contains(r.body, "\"w0\""));
  CHECK(contains(r.body, "\"w4\""));
  CHECK(contains(r.body, "data: [DONE]"));

  Seen s = env.openai_seen.get();
  CHECK(s.authorization == "Bearer " + kOpenAiKey);
  CHECK(s.x_api_key.empty());
  CHECK(s.target == "/v1/chat/completions");  // base_url ".../v1" does not double it
  CHECK(s.host == "127.0.0.1:" + std::to_string(env.openai.port()));
  auto sent = nlohmann::json::parse(s.body);
  CHECK(sent["model"] == "gpt-backend");
  CHECK(sent["messages"][0]["content"] == kPrompt);
  CHECK(sent["stream"] == true);
  CHECK(s.body.find("\"model\"") < s.body.find("\"messages\""));  // field order kept

  // Each upstream piece is its own frame, and the first reached the caller before the upstream
  // had even written its last one.
  REQUIRE(r.chunks.size() >= 5);
  CHECK(r.chunks.front().second < s.last_chunk_sent);
  CHECK(r.chunks.front().second - t0 < 300ms);

  auto log = env.log_of(env.caller->last_call_id);
  REQUIRE(log);
  CHECK(log->sandbox_id() == kSid);
  CHECK(log->stream() == "inference");
  const auto& ev = log->inference();
  CHECK(ev.api() == "openai");
  CHECK(ev.method() == "POST");
  CHECK(ev.path() == "/v1/chat/completions");
  CHECK(ev.model() == "gpt-agent");
  CHECK(ev.route() == "* (global)");
  CHECK(ev.provider() == "openai-main");
  CHECK(ev.backend_model() == "gpt-backend");
  CHECK(ev.status() == 200);
  CHECK(ev.streamed());
  CHECK(ev.binary() == "/usr/bin/node");
  CHECK(ev.request_bytes() == chat("gpt-agent", true).size());
  CHECK(ev.response_bytes() == r.body.size());
  CHECK(ev.first_byte_ms() > 0);
  CHECK(ev.latency_ms() >= ev.first_byte_ms());
  CHECK(ev.error().empty());
  CHECK(contains(log->line(), "-> openai-main (gpt-backend) 200"));
  const std::string all = log->SerializeAsString();
  for (const auto& secret : {kOpenAiKey, kAgentKey, kPrompt, std::string("w0")}) {
    CAPTURE(secret);
    CHECK_FALSE(contains(all, secret));
  }
}

TEST_CASE("a backend that answers 500 is passed over for the next; when all fail the caller gets 502") {
  Env env;
  env.routes("global", config("", {{"gpt-*", {{"openai-main", "", "any", 2}, {"broken", "", "any", 1}}},
                                   {"only-broken", {{"broken", "", "any", 1}}}}));
  env.start_router();

  Reply r = env.call("gpt-4o");
  CHECK(r.status == 200);
  CHECK(r.json()["model"] == "gpt-4o");  // no backend model: the caller's stays
  CHECK(env.broken_seen.get().hits == 1);
  CHECK(env.openai_seen.get().hits == 1);
  auto log = env.log_of(env.caller->last_call_id);
  REQUIRE(log);
  REQUIRE(log->inference().attempts_size() == 1);
  CHECK(log->inference().attempts(0) == "broken: HTTP 500: internal error at the backend");
  CHECK(log->inference().provider() == "openai-main");

  r = env.call("only-broken");
  CHECK(r.status == 502);
  CHECK(r.end_error.empty());  // a complete (error) response
  auto err = r.json()["error"];
  CHECK(err["type"] == "api_error");
  CHECK(contains(err["message"], "every backend of route 'only-broken' (global) failed"));
  CHECK(contains(err["message"], "broken: HTTP 500"));
}

TEST_CASE("a local-only sandbox never reaches an 'any' backend, and a local-only backend must be local") {
  Env env;
  env.routes("global", config("", {{"*", {{"cloud", "", "any", 0}, {"local", "llama", "local-only", 5}}}}));
  env.routes("sandbox." + kSid, config("local-only", {{"cloud-only", {{"cloud", "", "any", 1}}},
                                                       {"public", {{"public", "", "local-only", 1}}}}));
  env.start_router();

  Reply r = env.call("gpt-4o");
  CHECK(r.status == 200);
  CHECK(r.json()["served_by"] == "local");
  Seen local = env.local_seen.get();
  CHECK(local.authorization.empty());  // keyless generic: no credential at all
  CHECK(local.host == "localhost:" + std::to_string(env.local.port()));  // connected by address, named by host
  CHECK(nlohmann::json::parse(local.body)["model"] == "llama");

  r = env.call("cloud-only");
  CHECK(r.status == 503);
  CHECK(contains(r.json()["error"]["message"], "may use only local-only backends"));

  r = env.call("public");
  CHECK(r.status == 502);
  CHECK(contains(r.json()["error"]["message"], "local-only backend public resolves to public address 93.184.216.34"));

  // Another sandbox is not local-only: the cheaper cloud backend serves it.
  const std::string other = "fedcba9876543210";
  r = env.caller->call("POST", "/v1/chat/completions", agent_headers(), chat("gpt-4o"), other, other);
  CHECK(r.status == 200);
  CHECK(r.json()["served_by"] == "cloud");
  CHECK(env.cloud_seen.get().hits == 1);  // only that call
}

TEST_CASE("route changes in KV take effect without a restart") {
  Env env;
  env.start_router();  // no tables yet

  Reply r = env.call("gpt-4o");
  CHECK(r.status == 400);
  CHECK(r.json()["error"]["param"] == "model");
  CHECK(r.json()["error"]["code"] == "model_not_found");
  CHECK(contains(r.json()["error"]["message"], "bulwark inference set --provider NAME --model MODEL"));

  env.routes("global", config("", {{"gpt-*", {{"openai-main", "", "any", 1}}}}));
  CHECK(bulwark::testing::wait_until([&] { return env.call("gpt-4o").status == 200; }, 5s));

  env.routes("sandbox." + kSid, config("", {{"gpt-*", {{"cloud", "", "any", 1}}}}));
  CHECK(bulwark::testing::wait_until([&] { return env.call("gpt-4o").json().value("served_by", "") == "cloud"; }, 5s));

  env.kv.put("sandbox." + kSid, "\xff\xff\xff");  // not a config: ignored, the previous one stays
  env.routes("global", config("", {{"gpt-*", {{"openai-main", "", "any", 1}}}, {"new-*", {{"local", "", "any", 1}}}}));
  CHECK(bulwark::testing::wait_until([&] { return env.call("new-model").status == 200; }, 5s));

  // A deleted sandbox table: its sandbox falls back to the global routes.
  kvStore* raw = nullptr;
  natsConnection* nc = nullptr;
  REQUIRE(natsConnection_ConnectTo(&nc, env.nats.url().c_str()) == NATS_OK);
  NatsPtr<natsConnection> conn(nc);
  jsCtx* js = nullptr;
  REQUIRE(natsConnection_JetStream(&js, nc, nullptr) == NATS_OK);
  NatsPtr<jsCtx> jsp(js);
  REQUIRE(js_KeyValue(&raw, js, subjects::kInferenceRoutesBucket) == NATS_OK);
  NatsPtr<kvStore> kvs(raw);
  REQUIRE(kvStore_Delete(kvs.get(), ("sandbox." + kSid).c_str()) == NATS_OK);
  CHECK(bulwark::testing::wait_until([&] { return env.call("gpt-4o").json().value("served_by", "x") == "x"; }, 5s));
}

TEST_CASE("Anthropic calls: x-api-key and a default anthropic-version; an OpenAI backend is skipped") {
  Env env;
  env.routes("global", config("", {{"claude-*", {{"openai-main", "", "any", 0}, {"anthropic-main", "", "any", 1}}}}));
  env.start_router();
  Reply r = env.caller->call("POST", "/v1/messages", agent_headers(),
                             R"({"model":"claude-3-5-sonnet","max_tokens":10,"messages":[]})");
  CHECK(r.status == 200);
  Seen s = env.anthropic_seen.get();
  CHECK(s.x_api_key == kAnthropicKey);
  CHECK(s.authorization.empty());
  CHECK(s.anthropic_version == "2023-06-01");
  CHECK(env.openai_seen.get().hits == 0);
  auto log = env.log_of(env.caller->last_call_id);
  REQUIRE(log);
  CHECK(log->inference().api() == "anthropic");
  REQUIRE(log->inference().attempts_size() == 1);
  CHECK(log->inference().attempts(0) == "openai-main: speaks openai, request is anthropic");

  // Anthropic-style errors for Anthropic calls.
  r = env.caller->call("POST", "/v1/messages", agent_headers(), R"({"max_tokens":10})");
  CHECK(r.status == 400);
  CHECK(r.json()["type"] == "error");
  CHECK(r.json()["error"]["type"] == "invalid_request_error");
}

TEST_CASE("requests the router answers itself: 404, 400, 413, /v1/models, a foreign sandbox") {
  Env env;
  env.routes("global", config("", {{"gpt-4o", {{"openai-main", "", "any", 1}}},
                                   {"*", {{"openai-main", "gpt-4o-mini", "any", 1}}}}));
  env.start_router();

  Reply r = env.caller->call("POST", "/v1/images/generations", agent_headers(), chat("gpt-4o"));
  CHECK(r.status == 404);
  CHECK(r.ended);
  CHECK(r.chunks.size() == 1);
  CHECK(contains(r.json()["error"]["message"], "POST /v1/chat/completions"));
  CHECK(contains(r.json()["error"]["message"], "GET /v1/models"));

  r = env.caller->call("POST", "/v1/chat/completions", agent_headers(), "[1,2]");
  CHECK(r.status == 400);
  CHECK(r.json()["error"]["param"] == "model");

  r = env.caller->call("POST", "/v1/chat/completions", agent_headers(), chat(std::string(70 * 1024, 'm')));
  CHECK(r.status == 413);
  CHECK(contains(r.json()["error"]["message"], "--max-request-bytes"));
  CHECK(contains(r.json()["error"]["message"], "65536"));
  CHECK(env.openai_seen.get().hits == 0);

  r = env.caller->call("GET", "/v1/models", agent_headers(), "");
  CHECK(r.status == 200);
  auto j = r.json();
  CHECK(j["object"] == "list");
  REQUIRE(j["data"].size() == 2);
  CHECK(j["data"][0]["id"] == "gpt-4o");
  CHECK(j["data"][1]["id"] == "gpt-4o-mini");

  // A call whose body names another sandbox than its subject.
  r = env.caller->call("POST", "/v1/chat/completions", agent_headers(), chat("gpt-4o"), "fedcba9876543210", kSid);
  CHECK(r.status == 400);
  CHECK(contains(r.json()["error"]["message"], "may call only for its own sandbox"));
  // Bytes that are no InferenceCall at all.
  r = env.caller->send(subjects::inference_call(kSid), "\xff\xff\xff");
  CHECK(r.status == 400);
  CHECK(env.openai_seen.get().hits == 0);
}

TEST_CASE("a stream that goes silent is cut after --stream-idle-timeout with an SSE error event") {
  Env env;
  env.routes("global", config("", {{"*", {{"openai-main", "", "any", 1}}}}));
  env.start_router();
  auto t0 = Clock::now();
  Reply r = env.call("stall", true);
  CHECK(Clock::now() - t0 < 1800ms);  // the backend would have stalled 2 s
  CHECK(r.status == 200);
  REQUIRE(r.chunks.size() == 2);
  CHECK(contains(r.chunks[0].first, "\"w0\""));
  CHECK(r.chunks[1].first.rfind("event: error\ndata: ", 0) == 0);
  auto ev = nlohmann::json::parse(r.chunks[1].first.substr(19));
  CHECK(ev["type"] == "error");
  CHECK(ev["error"]["type"] == "timeout");
  CHECK(contains(r.end_error, "--stream-idle-timeout"));
  auto log = env.log_of(env.caller->last_call_id);
  REQUIRE(log);
  CHECK(contains(log->inference().error(), "--stream-idle-timeout"));
}

TEST_CASE("providers: cached, dropped on bulwark.provider.changed, and the cache rides out a gateway outage") {
  Env env;
  env.routes("global", config("", {{"gpt-*", {{"openai-main", "", "any", 1}}}, {"c-*", {{"cloud", "", "any", 1}}}}));
  env.start_router();
  CHECK(env.call("gpt-4o").status == 200);
  CHECK(env.call("gpt-4o").status == 200);
  CHECK(env.resolved("openai-main") == 1);

  v1::Provider p = provider("openai-main", "openai", env.openai.url(), {{"OPENAI_API_KEY", "sk-rotated-0123456789"}});
  env.set_provider(p);
  v1::ProviderResolveRequest changed;
  changed.set_name("openai-main");
  env.bus->publish(subjects::kProviderChanged, changed);
  env.bus->flush();
  CHECK(bulwark::testing::wait_until(
      [&] { return env.call("gpt-4o").status == 200 && env.openai_seen.get().authorization == "Bearer sk-rotated-0123456789"; },
      5s));

  env.gateway = Subscription();  // the gateway goes away
  env.bus->flush();
  CHECK(env.call("gpt-4o").status == 200);  // still cached
  Reply r = env.call("c-1");                // never resolved: nothing to go on
  CHECK(r.status == 503);
  CHECK(contains(r.json()["error"]["message"], "gateway-api is not answering"));
}

TEST_CASE("calls beyond --max-concurrent are refused at once with 503") {
  Env env;
  env.routes("global", config("", {{"*", {{"openai-main", "", "any", 1}}}}));
  RouterOptions o;
  o.max_concurrent = 1;
  env.start_router(o);
  Reply slow;
  std::thread t([&] { slow = env.caller->call("POST", "/v1/chat/completions", agent_headers(), chat("m", true)); });
  REQUIRE(bulwark::testing::wait_until([&] { return env.openai_seen.get().hits == 1; }, 5s));
  Caller other(env.nats.url());
  auto t0 = Clock::now();
  Reply r = other.call("POST", "/v1/chat/completions", agent_headers(), chat("m"));
  CHECK(Clock::now() - t0 < 300ms);
  CHECK(r.status == 503);
  CHECK(contains(r.json()["error"]["message"], "--max-concurrent"));
  t.join();
  CHECK(slow.status == 200);
  CHECK(slow.end_error.empty());
}

TEST_CASE("on stop, a call still running after --shutdown-grace is cut with an end that says why") {
  Env env;
  env.routes("global", config("", {{"*", {{"openai-main", "", "any", 1}}}}));
  RouterOptions o;
  o.forward.idle_timeout = 10s;  // the stall would last: only the stop ends it
  env.start_router(o);           // grace: 1 s
  Reply r;
  std::thread t([&] { r = env.caller->call("POST", "/v1/chat/completions", agent_headers(), chat("stall", true)); });
  REQUIRE(bulwark::testing::wait_until([&] { return env.openai_seen.get().hits == 1; }, 5s));
  std::this_thread::sleep_for(100ms);
  auto t0 = Clock::now();
  env.router->stop();
  CHECK(Clock::now() - t0 < 1800ms);
  t.join();
  CHECK(r.status == 200);
  CHECK(r.ended);
  CHECK(r.seq_ok);
  CHECK(r.end_error == "the privacy router is shutting down");
  // Calls after the stop are refused at once.
  Reply late = env.call("m");
  CHECK(late.status == 503);
  CHECK(late.json()["error"]["message"] == "the privacy router is shutting down; retry the call");
}
