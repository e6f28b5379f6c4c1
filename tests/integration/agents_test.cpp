// Real agent CLIs in real podman sandboxes: the agent image (scripts/build-agent-image: Debian,
// Node 24 and the CLIs from npm), the presets of deploy/presets, and the bulwark CLI's
// `sandbox create --agent`. Claude Code (`claude -p`) and Codex (`codex exec`) each complete one
// request end to end against a local Anthropic-/OpenAI-compatible model server that they reach only
// through https://inference.local: the privacy router swaps the preset's placeholder key for the
// provider's, which the CLI created from its own environment.
//
// The image is built on first use and cached (by recipe label; the npm tarballs and rootfs under
// ~/.cache/bulwark/agent-image): about 9.5 minutes from nothing and 4-7 minutes from the cache
// (mostly `podman import` of 2.5 GB) on the 2-core test machine, nothing when the image is current.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <thread>

#include "cli/agent_presets.h"
#include "shared/util.h"
#include "tests/integration/suite.h"
#include "tests/support/test_pki.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::string kImage = "localhost/bulwark/agent:latest";
const std::string kAnthropicKey = "sk-ant-backend-agents-5e1f0c9a7b";
const std::string kOpenAiKey = "sk-backend-agents-openai-83d2aa41";
const std::string kClaudeReply = "BULWARK-CLAUDE-REPLY-4812";
const std::string kCodexReply = "BULWARK-CODEX-REPLY-9377";

struct Seen {
  std::string method, path, authorization, x_api_key, all_headers;
};

// SSE: one event.
std::string sse(const std::string& event, const json& data) { return "event: " + event + "\ndata: " + data.dump() + "\n\n"; }

// A model server speaking Anthropic's Messages API and OpenAI's Responses and Chat Completions
// APIs, streamed or not, always with the same fixed text. HTTPS with the test PKI's leaf.
class ModelServer {
 public:
  explicit ModelServer(const TestPki& pki) : server_(pki.leaf.get(), pki.leaf_key.get()) {
    auto handle = [this](const httplib::Request& req, httplib::Response& res) { serve(req, res); };
    server_.Get(".*", handle).Post(".*", handle);
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    REQUIRE(wait_until([&] { return server_.is_running(); }, 5s));
  }
  ~ModelServer() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }
  std::vector<Seen> seen() const {
    std::lock_guard lock(mu_);
    return seen_;
  }
  std::string log() const {
    std::string out;
    for (const auto& s : seen()) out += s.method + " " + s.path + "\n";
    return out;
  }

 private:
  void serve(const httplib::Request& req, httplib::Response& res) {
    {
      Seen s{req.method, req.path, req.get_header_value("Authorization"), req.get_header_value("x-api-key"), ""};
      for (const auto& [k, v] : req.headers) s.all_headers += k + ": " + v + "\n";
      std::lock_guard lock(mu_);
      seen_.push_back(std::move(s));
    }
    json body = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
    bool stream = body.is_object() && body.value("stream", false);
    std::string model = body.is_object() ? body.value("model", "m") : "m";
    if (req.path == "/v1/messages/count_tokens") {
      res.set_content(R"({"input_tokens":3})", "application/json");
    } else if (req.path == "/v1/messages") {
      anthropic(res, model, stream);
    } else if (req.path == "/v1/responses") {
      responses(res, model, stream);
    } else if (req.path == "/v1/chat/completions") {
      chat(res, model, stream);
    } else if (req.path == "/v1/models") {
      res.set_content(R"({"object":"list","data":[{"id":"gpt-5","object":"model"}]})", "application/json");
    } else {
      res.status = 404;
      res.set_content(R"({"error":{"message":"not served by the agents test"}})", "application/json");
    }
  }

  static void anthropic(httplib::Response& res, const std::string& model, bool stream) {
    json usage = {{"input_tokens", 3}, {"output_tokens", 3}};
    if (!stream) {
      json reply = {{"id", "msg_1"}, {"type", "message"}, {"role", "assistant"}, {"model", model},
                    {"content", json::array({{{"type", "text"}, {"text", kClaudeReply}}})},
                    {"stop_reason", "end_turn"}, {"stop_sequence", nullptr}, {"usage", usage}};
      res.set_content(reply.dump(), "application/json");
      return;
    }
    std::string out =
        sse("message_start", {{"type", "message_start"},
                              {"message", {{"id", "msg_1"}, {"type", "message"}, {"role", "assistant"}, {"model", model},
                                           {"content", json::array()}, {"stop_reason", nullptr}, {"stop_sequence", nullptr},
                                           {"usage", usage}}}}) +
        sse("content_block_start",
            {{"type", "content_block_start"}, {"index", 0}, {"content_block", {{"type", "text"}, {"text", ""}}}}) +
        sse("content_block_delta",
            {{"type", "content_block_delta"}, {"index", 0}, {"delta", {{"type", "text_delta"}, {"text", kClaudeReply}}}}) +
        sse("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}}) +
        sse("message_delta", {{"type", "message_delta"},
                              {"delta", {{"stop_reason", "end_turn"}, {"stop_sequence", nullptr}}},
                              {"usage", {{"output_tokens", 3}}}}) +
        sse("message_stop", {{"type", "message_stop"}});
    res.set_content(out, "text/event-stream");
  }

  static void responses(httplib::Response& res, const std::string& model, bool stream) {
    json item = {{"id", "msg_1"}, {"type", "message"}, {"role", "assistant"}, {"status", "completed"},
                 {"content", json::array({{{"type", "output_text"}, {"text", kCodexReply}, {"annotations", json::array()}}})}};
    json usage = {{"input_tokens", 3}, {"input_tokens_details", {{"cached_tokens", 0}}}, {"output_tokens", 3},
                  {"output_tokens_details", {{"reasoning_tokens", 0}}}, {"total_tokens", 6}};
    json done = {{"id", "resp_1"}, {"object", "response"}, {"created_at", 1}, {"status", "completed"}, {"model", model},
                 {"output", json::array({item})}, {"usage", usage}};
    if (!stream) {
      res.set_content(done.dump(), "application/json");
      return;
    }
    json created = done;
    created["status"] = "in_progress";
    created["output"] = json::array();
    created.erase("usage");
    json partial = item;
    partial["status"] = "in_progress";
    partial["content"] = json::array();
    std::string out =
        sse("response.created", {{"type", "response.created"}, {"sequence_number", 0}, {"response", created}}) +
        sse("response.output_item.added",
            {{"type", "response.output_item.added"}, {"sequence_number", 1}, {"output_index", 0}, {"item", partial}}) +
        sse("response.content_part.added",
            {{"type", "response.content_part.added"}, {"sequence_number", 2}, {"item_id", "msg_1"}, {"output_index", 0},
             {"content_index", 0}, {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}}}) +
        sse("response.output_text.delta", {{"type", "response.output_text.delta"}, {"sequence_number", 3}, {"item_id", "msg_1"},
                                           {"output_index", 0}, {"content_index", 0}, {"delta", kCodexReply}}) +
        sse("response.output_text.done", {{"type", "response.output_text.done"}, {"sequence_number", 4}, {"item_id", "msg_1"},
                                          {"output_index", 0}, {"content_index", 0}, {"text", kCodexReply}}) +
        sse("response.output_item.done",
            {{"type", "response.output_item.done"}, {"sequence_number", 5}, {"output_index", 0}, {"item", item}}) +
        sse("response.completed", {{"type", "response.completed"}, {"sequence_number", 6}, {"response", done}});
    res.set_content(out, "text/event-stream");
  }

  static void chat(httplib::Response& res, const std::string& model, bool stream) {
    if (!stream) {
      json reply = {{"id", "c1"}, {"object", "chat.completion"}, {"created", 1}, {"model", model},
                    {"choices", json::array({{{"index", 0}, {"message", {{"role", "assistant"}, {"content", kCodexReply}}},
                                              {"finish_reason", "stop"}}})}};
      res.set_content(reply.dump(), "application/json");
      return;
    }
    json chunk = {{"id", "c1"}, {"object", "chat.completion.chunk"}, {"created", 1}, {"model", model},
                  {"choices", json::array({{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", kCodexReply}}},
                                            {"finish_reason", "stop"}}})}};
    res.set_content("data: " + chunk.dump() + "\n\ndata: [DONE]\n\n", "text/event-stream");
  }

  httplib::SSLServer server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Seen> seen_;
};


// The bulwark CLI as a user runs it: this process's environment without any model key or base URL
// of the machine it runs on, plus `extra` ("K=V").
ProcessResult bulwark_cli(const std::vector<std::string>& args, const std::string& gateway, const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {bin("bulwark"), "--gateway", gateway};
  argv.insert(argv.end(), args.begin(), args.end());
  auto env = environment_without([](const std::string& kv) {
    for (const char* p : {"ANTHROPIC_", "CLAUDE_", "OPENAI_", "GITHUB_TOKEN=", "GH_TOKEN=", "COPILOT_", "GEMINI_", "GOOGLE_API_KEY="})
      if (kv.rfind(p, 0) == 0) return true;
    return false;
  });
  env.push_back("BULWARK_PRESETS_DIR=" + source_dir() + "/deploy/presets");
  env.insert(env.end(), extra.begin(), extra.end());
  return run_process(argv, env);
}

// Builds (or finds, by recipe label) the agent image once per test binary.
void ensure_agent_image() {
  static bool built = false;
  if (built) return;
  require_binary("debootstrap", "debootstrap");
  require_binary("npm", "npm");
  auto t0 = std::chrono::steady_clock::now();
  int rc = std::system((source_dir() + "/scripts/build-agent-image >&2").c_str());
  REQUIRE_MESSAGE(rc == 0, "scripts/build-agent-image failed (its output is above)");
  MESSAGE("agent image ready in "
          << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t0).count() << " s");
  built = true;
}

std::vector<std::string> stdout_lines(Suite& suite, const std::string& id) {
  std::vector<std::string> lines;
  auto r = suite.client().Get("/v1/sandboxes/" + id + "/logs?tail=1000");
  if (!r || r->status != 200) {
    MESSAGE("GET logs: " << (r ? std::to_string(r->status) + " " + r->body : std::string("no answer")));
    return lines;
  }
  const json body = json::parse(r->body);  // kept: a range over a temporary's member would dangle
  for (const auto& l : body.value("lines", json::array()))
    if (l.value("stream", "") == "stdout") lines.push_back(l.value("line", ""));
  return lines;
}

}  // namespace

TEST_CASE("every agent CLI of the presets prints its version inside a sandbox of the agent image") {
  ensure_agent_image();
  Suite suite;
  auto presets = cli::load_presets({source_dir() + "/deploy/presets"});
  REQUIRE(presets.size() == 6);
  std::string script;
  for (const auto& p : presets) {
    std::string cmd;
    for (const auto& a : p.version_command) cmd += (cmd.empty() ? "" : " ") + a;
    // One line per CLI: its name, its exit code, the first line it printed.
    script += "out=$(timeout 60 " + cmd + " 2>&1); echo \"version " + p.name + " rc=$? $(echo \"$out\" | head -1)\"\n";
  }
  script += "echo \"node $(node --version) user $(id -un) home $HOME pwd $(pwd)\"\necho agent-done\n";
  // The claude-code preset's environment and policy: what a user's sandbox gets.
  const auto& claude = *std::find_if(presets.begin(), presets.end(), [](const auto& p) { return p.name == "claude-code"; });
  auto s = suite.create({{"image", kImage}, {"command", {"/bin/sh", "-c", script}}, {"policy", claude.policy_yaml},
                         {"env", claude.env}});
  std::string id = s["sandbox_id"];
  s = suite.wait_phase(id, {"EXITED", "FAILED"}, 150s);
  REQUIRE_MESSAGE(s["phase"] == "EXITED", s.dump(2) << "\n" << suite.logs_of("driver-podman"));
  std::vector<std::string> lines;
  wait_until([&] {
    lines = stdout_lines(suite, id);
    if (std::find(lines.begin(), lines.end(), "agent-done") != lines.end()) return true;
    std::this_thread::sleep_for(250ms);  // the last lines may still be on their way to the gateway
    return false;
  }, 10s);
  std::string all;
  for (const auto& l : lines) all += l + "\n";
  INFO("agent output:\n" << all << "\nsandbox: " << s.dump(1));
  CHECK(has(all, "version claude-code rc=0 2.1.332 (Claude Code)"));
  CHECK(has(all, "version codex rc=0 codex-cli 0.171.0"));
  CHECK(has(all, "version opencode rc=0 1.18.33"));
  CHECK(has(all, "version copilot rc=0 GitHub Copilot CLI 1.0.102"));
  CHECK(has(all, "version openclaw rc=0 OpenClaw 2026.9.6"));
  CHECK(has(all, "version gemini rc=0 0.61.0"));
  CHECK(has(all, "node v24.22.3 user sandbox home /sandbox pwd /sandbox"));
}

TEST_CASE("claude -p and codex exec answer through inference.local with the provider's key, never the agent's") {
  ensure_agent_image();
  TestPki pki{"Bulwark agents test CA"};
  ModelServer model(pki);
  Suite suite;
  suite.start_router({"--backend-ca", pki.ca_file});
  auto presets = cli::load_presets({source_dir() + "/deploy/presets"});
  std::map<std::string, cli::AgentPreset> by;
  for (const auto& p : presets) by[p.name] = p;

  // Claude Code: the CLI creates the anthropic provider from its own environment (key and base
  // URL), attaches it, and routes the sandbox's model calls to it.
  auto t0 = std::chrono::steady_clock::now();
  auto claude = bulwark_cli({"sandbox", "create", "--agent", "claude-code", "--name", "claude-hi", "--timeout", "120", "--",
                             "claude", "-p", "say hi"},
                            suite.gateway_url(), {"ANTHROPIC_API_KEY=" + kAnthropicKey, "ANTHROPIC_BASE_URL=" + model.url()});
  auto claude_s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t0).count();
  {
    INFO("claude: exit " << claude.code << " in " << claude_s << " s\nstdout:\n" << claude.out << "\nstderr:\n" << claude.err
                         << "\nmodel server saw:\n" << model.log() << "\n--- router ---\n" << suite.logs_of("privacy-router"));
    CHECK(claude.code == 0);
    CHECK(has(claude.err, "attached provider anthropic (from ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL)\n"));
    CHECK(has(claude.out, "EXITED"));
    CHECK(has(claude.out, kClaudeReply));
    json rec = suite.get("claude-hi");
    CHECK(rec.value("exit_code", -1) == 0);
    // The preset's environment, not the CLI's: the agent knows only inference.local.
    CHECK(rec["spec"]["env"]["ANTHROPIC_BASE_URL"] == "https://inference.local");
    CHECK(rec["spec"]["labels"]["agent"] == "claude-code");
    CHECK(rec["spec"]["providers"] == json::array({"anthropic"}));
  }
  auto anthropic_calls = model.seen();
  size_t messages = 0;
  for (const auto& s : anthropic_calls) {
    if (s.path != "/v1/messages") continue;
    ++messages;
    CHECK(s.x_api_key == kAnthropicKey);
    CHECK_FALSE(has(s.all_headers, by["claude-code"].env["ANTHROPIC_API_KEY"]));
  }
  CHECK(messages >= 1);
  // The key went from the CLI's environment into the provider, not into the sandbox.
  auto sandbox = suite.client().Get("/v1/sandboxes/claude-hi");
  REQUIRE(sandbox);
  CHECK_FALSE(has(sandbox->body, kAnthropicKey));

  // Codex: the same with an openai provider.
  t0 = std::chrono::steady_clock::now();
  auto codex = bulwark_cli({"sandbox", "create", "--agent", "codex", "--name", "codex-hi", "--timeout", "120", "--", "codex",
                            "exec", "--skip-git-repo-check", "say hi"},
                           suite.gateway_url(), {"OPENAI_API_KEY=" + kOpenAiKey, "OPENAI_BASE_URL=" + model.url() + "/v1"});
  auto codex_s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t0).count();
  {
    INFO("codex: exit " << codex.code << " in " << codex_s << " s\nstdout:\n" << codex.out << "\nstderr:\n" << codex.err
                        << "\nmodel server saw:\n" << model.log() << "\n--- router ---\n" << suite.logs_of("privacy-router"));
    CHECK(codex.code == 0);
    CHECK(has(codex.err, "attached provider openai (from OPENAI_API_KEY and OPENAI_BASE_URL)\n"));
    CHECK(has(codex.out, kCodexReply));
    CHECK(suite.get("codex-hi").value("exit_code", -1) == 0);
  }
  size_t responses = 0;
  for (const auto& s : model.seen()) {
    if (s.path != "/v1/responses" && s.path != "/v1/chat/completions") continue;
    ++responses;
    CHECK(s.authorization == "Bearer " + kOpenAiKey);
    CHECK_FALSE(has(s.all_headers, by["codex"].env["OPENAI_API_KEY"]));
  }
  CHECK(responses >= 1);
  MESSAGE("claude -p took " << claude_s << " s, codex exec " << codex_s << " s (sandbox create to exit)");
}
