// inference.local end to end: real OpenAI- and Anthropic-style model servers on loopback (TLS with a
// test CA, SSE streaming, one that always fails, one keyless "local" server), providers and routes
// set through gateway-api's REST API, a real privacy-router, and agents in real podman sandboxes
// calling https://inference.local with curl and with the official OpenAI SDK (npm `openai`) —
// through the supervisor's proxy, which hands each request to the router over NATS.
//
// Each sandbox's agent is one shell script whose stdout (relayed to the gateway's logs) the test
// reads back: every line it prints starts with a tag the checks look for.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>

#include "shared/util.h"
#include "tests/integration/suite.h"
#include "tests/support/test_pki.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// Every secret here carries a marker, so "no secret anywhere" is one search per place.
const std::string kOpenAiKey = "sk-backend-openai-bwsecret-7f3a9c01d2e4";
const std::string kAnthropicKey = "sk-ant-backend-bwsecret-52be88aa10c9";
const std::string kBrokenKey = "sk-backend-broken-bwsecret-0c0c0c0c0c0c";
const std::string kGithubToken = "ghp_bwgithub_4d1f7e2a9b3c5d6e";
const std::string kAgentKey = "sk-agent-made-up-key";
bool leaks(const std::string& s) { return has(s, "bwsecret") || has(s, "bwgithub"); }

struct Seen {
  std::string path, authorization, x_api_key, model, all_headers;
};

// A model server: "openai" (chat completions, SSE when stream is true), "anthropic" (messages),
// "fail" (500 to everything). HTTPS with the test PKI's leaf unless plain.
class ModelServer {
 public:
  ModelServer(std::string name, std::string kind, const TestPki* pki) : name_(std::move(name)), kind_(std::move(kind)) {
    if (pki) server_ = std::make_unique<httplib::SSLServer>(pki->leaf.get(), pki->leaf_key.get());
    else server_ = std::make_unique<httplib::Server>();
    auto handle = [this](const httplib::Request& req, httplib::Response& res) { serve(req, res); };
    server_->Get(".*", handle).Post(".*", handle);
    port_ = server_->bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    REQUIRE(wait_until([&] { return server_->is_running(); }, 5s));
    url_ = std::string(pki ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
  }
  ~ModelServer() {
    server_->stop();
    thread_.join();
  }
  const std::string& url() const { return url_; }
  std::vector<Seen> seen() const {
    std::lock_guard lock(mu_);
    return seen_;
  }
  size_t hits() const { return seen().size(); }

 private:
  void serve(const httplib::Request& req, httplib::Response& res) {
    Seen s{req.path, req.get_header_value("Authorization"), req.get_header_value("x-api-key"), "", ""};
    for (const auto& [k, v] : req.headers) s.all_headers += k + ": " + v + "\n";
    json body = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
    if (body.is_object()) s.model = body.value("model", "");
    {
      std::lock_guard lock(mu_);
      seen_.push_back(s);
    }
    if (kind_ == "fail") {
      res.status = 500;
      res.set_content(R"({"error":"backend down"})", "application/json");
      return;
    }
    if (kind_ == "anthropic") {
      json reply = {{"id", "msg_1"}, {"type", "message"}, {"role", "assistant"}, {"model", s.model},
                    {"content", json::array({{{"type", "text"}, {"text", "Hello from " + name_}}})},
                    {"stop_reason", "end_turn"}, {"usage", {{"input_tokens", 3}, {"output_tokens", 3}}}};
      res.set_content(reply.dump(), "application/json");
      return;
    }
    if (body.is_object() && body.value("stream", false)) {
      // Five events 200 ms apart: buffering anywhere on the way shows as one burst at the end.
      auto n = std::make_shared<int>(0);
      std::string model = s.model;
      res.set_chunked_content_provider("text/event-stream", [n, model](size_t, httplib::DataSink& sink) {
        if (*n > 0) std::this_thread::sleep_for(200ms);
        if (*n < 5) {
          json ev = {{"id", "c1"}, {"object", "chat.completion.chunk"}, {"created", 1}, {"model", model},
                     {"choices", json::array({{{"index", 0}, {"delta", {{"content", "w" + std::to_string(*n)}}},
                                               {"finish_reason", nullptr}}})}};
          std::string data = "data: " + ev.dump() + "\n\n";
          sink.write(data.data(), data.size());
        } else {
          std::string done = "data: [DONE]\n\n";
          sink.write(done.data(), done.size());
          sink.done();
        }
        ++*n;
        return true;
      });
      return;
    }
    if (req.path == "/v1/models") {
      res.set_content(R"({"object":"list","data":[]})", "application/json");
      return;
    }
    json reply = {{"id", "chatcmpl-1"}, {"object", "chat.completion"}, {"created", 1}, {"model", s.model},
                  {"choices", json::array({{{"index", 0}, {"message", {{"role", "assistant"}, {"content", "Hello from " + name_}}},
                                            {"finish_reason", "stop"}}})},
                  {"usage", {{"prompt_tokens", 3}, {"completion_tokens", 3}, {"total_tokens", 6}}}};
    res.set_content(reply.dump(), "application/json");
  }

  std::string name_, kind_, url_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Seen> seen_;
};

std::string run_capture(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  REQUIRE(f != nullptr);
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  int rc = ::pclose(f);
  REQUIRE_MESSAGE(rc == 0, cmd << " failed: " << out);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

const char* kPolicy =
    "version: 1\n"
    "filesystem_policy:\n"
    "  read_only: [/bin, /usr, /lib, /lib64, /etc, /opt, /proc, /dev/urandom]\n"
    "  read_write: [/tmp, /dev/null, /sandbox]\n";

// curl in the sandbox: prints "<tag> <http code> <body>" on one line.
std::string curl_step(const std::string& tag, const std::string& args) {
  return "curl -sS -o /tmp/" + tag + " -w '%{http_code}' " + args + " > /tmp/" + tag + ".code 2>/tmp/" + tag +
         ".err; echo \"" + tag + " $(cat /tmp/" + tag + ".code) $(tr -d '\\n' < /tmp/" + tag + ") $(cat /tmp/" + tag +
         ".err)\"\n";
}
const std::string kChat = R"('{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}')";

class Fixture {
 public:
  Fixture()
      : openai("openai-main", "openai", &pki), anthropic("anthropic-main", "anthropic", &pki),
        broken("broken", "fail", nullptr), local("ollama", "openai", nullptr) {
    image = run_capture(source_dir() + "/tests/integration/inference/build-image.sh 2>&1 | tail -1");
    suite.start_router({"--backend-ca", pki.ca_file});
    provider({{"name", "openai-main"}, {"type", "openai"}, {"base_url", openai.url()},
              {"credentials", {{"OPENAI_API_KEY", kOpenAiKey}}}});
    provider({{"name", "anthropic-main"}, {"type", "anthropic"}, {"base_url", anthropic.url()},
              {"credentials", {{"ANTHROPIC_API_KEY", kAnthropicKey}}}});
    provider({{"name", "broken"}, {"type", "openai"}, {"base_url", broken.url()},
              {"credentials", {{"OPENAI_API_KEY", kBrokenKey}}}});
    provider({{"name", "ollama"}, {"type", "generic"}, {"base_url", local.url()}});
    provider({{"name", "github-ci"}, {"type", "github"}, {"credentials", {{"GITHUB_TOKEN", kGithubToken}}}});
    // gpt-*: the broken backend is cheapest, so every call tries it first and falls back.
    json routes = {{"routes", json::array({
        {{"match", "gpt-*"}, {"backends", json::array({
             {{"provider", "openai-main"}, {"model", "gpt-backend-model"}, {"privacy", "any"}, {"cost", 2}},
             {{"provider", "broken"}, {"privacy", "any"}, {"cost", 1}}})}},
        {{"match", "claude-*"}, {"backends", json::array({
             {{"provider", "anthropic-main"}, {"model", "claude-backend-model"}, {"privacy", "any"}}})}}})}};
    auto r = suite.client().Put("/v1/inference", routes.dump(), "application/json");
    REQUIRE_MESSAGE((r && r->status == 200), "PUT /v1/inference: " << (r ? r->body : "no reply"));
  }

  void provider(const json& p) {
    auto r = suite.client().Post("/v1/providers", p.dump(), "application/json");
    REQUIRE_MESSAGE((r && r->status == 201), "POST /v1/providers: " << (r ? r->body : "no reply"));
    CHECK_FALSE(leaks(r->body));
  }

  // Runs `script` as the agent of a new sandbox until it exits; returns its stdout lines.
  std::vector<std::string> run_agent(const std::string& script, const json& providers, std::string* id_out,
                                     const std::function<void(const std::string&)>& after_create = {}) {
    auto s = suite.create({{"image", image}, {"command", {"/bin/sh", "-c", script}}, {"policy", kPolicy},
                           {"providers", providers}});
    std::string id = s["sandbox_id"];
    if (id_out) *id_out = id;
    if (after_create) after_create(id);
    s = suite.wait_phase(id, {"EXITED", "FAILED"}, 120s);
    REQUIRE_MESSAGE(s["phase"] == "EXITED", s.dump(2) << "\n" << suite.logs_of("driver-podman"));
    std::vector<std::string> lines;
    wait_until([&] {
      lines.clear();
      auto r = suite.client().Get("/v1/sandboxes/" + id + "/logs?stream=stdout");
      if (!r || r->status != 200) return false;
      json body = json::parse(r->body);
      for (const auto& l : body["lines"]) lines.push_back(l.value("line", ""));
      return std::any_of(lines.begin(), lines.end(), [](const std::string& l) { return l == "agent-done"; });
    }, 10s);
    return lines;
  }

  TestPki pki{"Bulwark inference test CA"};
  ModelServer openai, anthropic, broken, local;
  Suite suite;
  std::string image;
};

std::string find_line(const std::vector<std::string>& lines, const std::string& tag) {
  for (const auto& l : lines)
    if (l.rfind(tag + " ", 0) == 0 || l == tag) return l;
  std::string all;
  for (const auto& l : lines) all += l + "\n";
  FAIL("no line tagged '" << tag << "' in the agent's output:\n" << all);
  return "";
}

}  // namespace

TEST_CASE("agents reach models only through inference.local, never holding a backend key") {
  Fixture f;
  // The agent's searches spell the markers in two quoted halves, so that its own command line (in
  // the sandbox record) does not contain what the test then looks for everywhere.
  std::string script =
      "echo \"env-github $(printf %s \"$GITHUB_TOKEN\" | sha256sum | cut -c1-16)\"\n"
      "echo \"env-secrets $(cat /proc/self/environ | tr '\\0' '\\n' | grep -c bw\"\"secret)\"\n"
      "echo \"fs-secrets $(grep -rl -e bw\"\"secret -e bw\"\"github /bin /etc /lib /lib64 /opt /root /sandbox /tmp /usr "
      "/run /dev/shm 2>/dev/null | wc -l)\"\n" +
      curl_step("chat", "https://inference.local/v1/chat/completions -H 'Authorization: Bearer " + kAgentKey +
                            "' -H 'Content-Type: application/json' -d " + kChat) +
      curl_step("messages", "https://inference.local/v1/messages -H 'x-api-key: " + kAgentKey +
                                "' -H 'anthropic-version: 2023-06-01' -H 'Content-Type: application/json' -d "
                                "'{\"model\":\"claude-sonnet\",\"max_tokens\":16,\"messages\":[{\"role\":\"user\","
                                "\"content\":\"hi\"}]}'") +
      // A client that ignores the proxy settings: the sandbox's DNS gives it the supervisor's
      // address, whose 443 the transparent path serves as inference.local (TLS with the sandbox CA).
      curl_step("transparent", "--noproxy '*' https://inference.local/v1/chat/completions -H 'Content-Type: "
                               "application/json' -d " + kChat) +
      curl_step("nomodel", "https://inference.local/v1/chat/completions -d '{\"model\":\"mistral-x\",\"messages\":[]}'") +
      curl_step("badpath", "https://inference.local/v1/unknown") +
      curl_step("curlstream", "-N https://inference.local/v1/chat/completions -H 'Content-Type: application/json' -d "
                              "'{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[]}'") +
      "cd /opt/sdk\n"
      "node client.js reply gpt-4o 2>&1 | sed 's/^/sdk-/'\n"
      "node client.js models 2>&1 | sed 's/^/sdk-/'\n"
      "node client.js stream gpt-4o 2>&1 | sed 's/^/sdk-/'\n"
      "echo agent-done\n";
  std::string id;
  auto lines = f.run_agent(script, json::array({"github-ci"}), &id);
  std::string all;
  for (const auto& l : lines) all += l + "\n";
  INFO("agent output:\n" << all << "\n--- router ---\n" << f.suite.logs_of("privacy-router"));

  // The operator attached github-ci: its token is in the agent's environment (and only there).
  CHECK(find_line(lines, "env-github") == "env-github " + run_capture("printf %s " + kGithubToken + " | sha256sum | cut -c1-16"));
  CHECK(find_line(lines, "env-secrets") == "env-secrets 0");
  CHECK(find_line(lines, "fs-secrets") == "fs-secrets 0");

  // curl, OpenAI style: the broken backend (cheapest) answered 500, the next one served it.
  auto chat = find_line(lines, "chat");
  CHECK(has(chat, "chat 200 "));
  CHECK(has(chat, "Hello from openai-main"));
  CHECK(f.broken.hits() >= 1);
  // Anthropic style, with the caller's own x-api-key replaced.
  auto messages = find_line(lines, "messages");
  CHECK(has(messages, "messages 200 "));
  CHECK(has(messages, "Hello from anthropic-main"));
  auto transparent = find_line(lines, "transparent");
  CHECK(has(transparent, "transparent 200 "));
  CHECK(has(transparent, "Hello from openai-main"));
  CHECK(has(find_line(lines, "nomodel"), "nomodel 4"));
  CHECK(has(find_line(lines, "nomodel"), "mistral-x"));
  CHECK(has(find_line(lines, "badpath"), "badpath 404 "));
  auto curlstream = find_line(lines, "curlstream");
  CHECK(has(curlstream, "curlstream 200 "));
  CHECK(has(curlstream, "w4"));
  CHECK(has(curlstream, "[DONE]"));

  // The official SDK: a reply, the model list, and a stream that arrived event by event.
  CHECK(find_line(lines, "sdk-reply") == "sdk-reply Hello from openai-main");
  CHECK((has(all, "sdk-model gpt-backend-model") || has(all, "sdk-model claude-backend-model")));
  std::vector<long long> at;
  std::string text;
  for (const auto& l : lines) {
    long long ms = 0;
    char word[64] = {0};
    if (std::sscanf(l.c_str(), "sdk-chunk %lld \"%63[^\"]\"", &ms, word) >= 1) {
      at.push_back(ms);
      text += word;
    }
  }
  CHECK(text == "w0w1w2w3w4");
  REQUIRE(at.size() == 5);
  // The server spaced them 200 ms apart: a buffered relay would deliver them in one burst.
  CHECK(at.back() - at.front() >= 600);
  CHECK(has(all, "sdk-done"));

  // What the upstreams saw: their own keys, never the agent's; the model rewritten by the route.
  REQUIRE(f.openai.hits() >= 4);
  for (const auto& s : f.openai.seen()) {
    CHECK(s.authorization == "Bearer " + kOpenAiKey);
    CHECK_FALSE(has(s.all_headers, kAgentKey));
    CHECK(s.model == "gpt-backend-model");
  }
  for (const auto& s : f.broken.seen()) CHECK(s.authorization == "Bearer " + kBrokenKey);
  REQUIRE(f.anthropic.hits() == 1);
  CHECK(f.anthropic.seen()[0].x_api_key == kAnthropicKey);
  CHECK_FALSE(has(f.anthropic.seen()[0].all_headers, kAgentKey));
  CHECK(f.anthropic.seen()[0].model == "claude-backend-model");
  CHECK(f.local.hits() == 0);

  // Audit: one event per call, naming backend, status and sizes; the failed attempt recorded.
  json events;
  wait_until([&] {
    auto r = f.suite.client().Get("/v1/sandboxes/" + id + "/logs?stream=inference");
    if (!r || r->status != 200) return false;
    events = json::parse(r->body)["lines"];
    return events.size() >= 8;
  }, 10s);
  INFO("inference events: " << events.dump(1));
  bool saw_fallback = false, saw_stream = false;
  for (const auto& e : events) {
    const json& ev = e["inference"];
    if (ev.value("provider", "") == "openai-main" && ev.value("status", 0) == 200 && !ev["attempts"].empty() &&
        has(ev["attempts"][0].get<std::string>(), "broken"))
      saw_fallback = true;
    // uint64 fields are JSON strings in the protobuf mapping.
    if (ev.value("streamed", false) && std::stoull(ev.value("response_bytes", std::string("0"))) > 0) saw_stream = true;
  }
  CHECK(saw_fallback);
  CHECK(saw_stream);

  // No secret in anything the API, the logs or the services print.
  for (const auto& path : {"/v1/providers", "/v1/providers/openai-main", "/v1/providers/github-ci", "/v1/inference"}) {
    auto r = f.suite.client().Get(path);
    REQUIRE(r);
    CHECK_MESSAGE(r->status == 200, path << ": " << r->body);
    CHECK_MESSAGE(!leaks(r->body), path << " leaks a secret: " << r->body);
  }
  auto sandbox = f.suite.client().Get("/v1/sandboxes/" + id);
  auto all_logs = f.suite.client().Get("/v1/sandboxes/" + id + "/logs");
  REQUIRE((sandbox && all_logs));
  CHECK_FALSE(leaks(sandbox->body));
  CHECK_FALSE(leaks(all_logs->body));
  for (const auto& svc : {"gateway-api", "privacy-router", "driver-podman", "scheduler"})
    CHECK_MESSAGE(!leaks(read_file(f.suite.file(std::string(svc) + ".log"))), svc << "'s log leaks a secret");
  for (const auto& db : {"gateway.db", "gateway.db-wal"})
    CHECK_MESSAGE(!leaks(read_file(f.suite.file(db))), db << " holds a secret in clear");
}

TEST_CASE("a local-only sandbox never reaches a remote backend, with routes changed while it runs") {
  Fixture f;
  // The agent waits until its own route (set after it started) is visible at inference.local.
  std::string script =
      "for i in $(seq 1 100); do curl -s https://inference.local/v1/models | grep -q llama-local && break; sleep 0.2; done\n"
      "echo \"models $(curl -s https://inference.local/v1/models | tr -d '\\n')\"\n" +
      curl_step("chat", "https://inference.local/v1/chat/completions -H 'Content-Type: application/json' -d " + kChat) +
      curl_step("claude", "https://inference.local/v1/messages -H 'Content-Type: application/json' -d "
                          "'{\"model\":\"claude-sonnet\",\"max_tokens\":16,\"messages\":[]}'") +
      "echo agent-done\n";
  size_t remote_before = f.openai.hits() + f.anthropic.hits() + f.broken.hits();
  auto set_local_only = [&](const std::string& id) {
    json cfg = {{"privacy", "local-only"},
                {"routes", json::array({{{"match", "gpt-*"}, {"backends", json::array({
                    {{"provider", "openai-main"}, {"privacy", "any"}, {"cost", 0}},
                    {{"provider", "ollama"}, {"model", "llama-local"}, {"privacy", "local-only"}, {"cost", 1}}})}}})}};
    auto r = f.suite.client().Put("/v1/inference?sandbox_id=" + id, cfg.dump(), "application/json");
    REQUIRE_MESSAGE((r && r->status == 200), "PUT /v1/inference?sandbox_id=: " << (r ? r->body : "no reply"));
  };
  std::string id;
  auto lines = f.run_agent(script, json::array(), &id, set_local_only);
  std::string all;
  for (const auto& l : lines) all += l + "\n";
  INFO("agent output:\n" << all << "\n--- router ---\n" << f.suite.logs_of("privacy-router"));
  CHECK(has(find_line(lines, "models"), "llama-local"));
  auto chat = find_line(lines, "chat");
  CHECK(has(chat, "chat 200 "));
  CHECK(has(chat, "Hello from ollama"));
  // Claude has only a remote backend: refused, saying why, rather than sent out.
  auto claude = find_line(lines, "claude");
  CHECK(has(claude, "claude 503 "));
  CHECK(has(claude, "local-only"));
  CHECK(f.openai.hits() + f.anthropic.hits() + f.broken.hits() == remote_before);
  REQUIRE(f.local.hits() >= 1);
  CHECK(f.local.seen().back().model == "llama-local");
  CHECK(f.local.seen().back().authorization.empty());  // a keyless local server gets no key
}
