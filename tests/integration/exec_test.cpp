// exec and file transfer into a real podman sandbox, end to end: REST and CLI -> gateway-api ->
// NATS -> the sandbox's supervisor -> a command forked by the agent's init (docs/exec.md). The
// PTY resize is tested against the real supervisor in supervisor/exec_test.cpp.
#include <doctest/doctest.h>
#include <poll.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>  // before Boost 1.74's asio

#include <boost/asio.hpp>
#include <boost/beast.hpp>

#include "tests/integration/suite.h"

extern char** environ;

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {
struct Run {
  int code;
  std::string out, err;
};
Run cli(const std::vector<std::string>& args, const std::string& gateway) {
  std::vector<std::string> argv = {bin("bulwark"), "--gateway", gateway};
  argv.insert(argv.end(), args.begin(), args.end());
  auto p = Process::spawn({.argv = argv, .pipe_stdout = true, .pipe_stderr = true});
  Run r{0, {}, {}};
  pollfd fds[2] = {{p.stdout_fd(), POLLIN, 0}, {p.stderr_fd(), POLLIN, 0}};
  std::string* into[2] = {&r.out, &r.err};
  char buf[4096];
  for (int live = 2; live > 0;) {
    if (::poll(fds, 2, -1) < 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) into[i]->append(buf, static_cast<size_t>(n));
      else fds[i].fd = -1, --live;
    }
  }
  r.code = p.wait();
  return r;
}

json post_exec(Suite& s, const std::string& id, const json& body, int want = 200) {
  auto r = s.client().Post("/v1/sandboxes/" + id + "/exec", body.dump(), "application/json");
  REQUIRE(r);
  REQUIRE_MESSAGE(r->status == want, r->body);
  return json::parse(r->body);
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

TEST_CASE("exec, streaming exec, file transfer and the CLI against a running podman sandbox") {
  Suite suite;
  auto s = suite.create({{"name", "exec-demo"}, {"command", {"sleep", "600"}}});
  std::string id = s["sandbox_id"];
  s = suite.wait_phase(id, {"READY", "FAILED", "EXITED"});
  REQUIRE_MESSAGE(s["phase"] == "READY", s.dump(2));

  // Exit code, stdout, stderr, stdin, env; by name too.
  auto t0 = std::chrono::steady_clock::now();
  auto r = post_exec(suite, "exec-demo", {{"command", {"sh", "-c", "echo out; echo err >&2; cat; echo $X; exit 5"}},
                                          {"stdin", "in\n"}, {"env", {{"X", "y"}}}});
  MESSAGE("exec round trip: " << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count() << " ms");
  CHECK(r["exit_code"] == 5);
  CHECK(r["stdout"] == "out\nin\ny\n");
  CHECK(r["stderr"] == "err\n");
  CHECK(r["timed_out"] == false);
  CHECK(r["truncated"] == false);
  CHECK(r.contains("duration_ms"));

  // The timeout.
  t0 = std::chrono::steady_clock::now();
  r = post_exec(suite, id, {{"command", {"sleep", "30"}}, {"timeout_s", 1}});
  CHECK(r["timed_out"] == true);
  CHECK(r["exit_code"] == 137);
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);

  // Bad bodies name the field; unknown sandboxes are 404.
  CHECK(post_exec(suite, id, {{"command", json::array()}}, 400)["error"]["field"] == "command");
  CHECK(post_exec(suite, id, {{"command", {"ls"}}, {"timeout", 3}}, 400)["error"]["field"] == "timeout");
  CHECK(post_exec(suite, id, {{"command", {"ls"}}, {"timeout_s", "3"}}, 400)["error"]["field"] == "timeout_s");
  CHECK(post_exec(suite, "no-such-sandbox", {{"command", {"ls"}}}, 404)["error"]["code"] == "not_found");

  // Streaming: NDJSON frames as they come, the exit code last.
  {
    auto c = suite.client();
    std::string body;
    auto res = c.Post("/v1/sandboxes/" + id + "/exec?stream=true", json{{"command", {"sh", "-c", "echo a; echo b >&2; exit 3"}}}.dump(),
                      "application/json");
    REQUIRE(res);
    REQUIRE_MESSAGE(res->status == 200, res->body);
    CHECK(res->get_header_value("Content-Type") == "application/x-ndjson");
    std::vector<json> frames;
    std::istringstream lines(res->body);
    for (std::string line; std::getline(lines, line);) frames.push_back(json::parse(line));
    REQUIRE(frames.size() >= 3);
    CHECK(frames.back()["exit_code"] == 3);
    std::string out, err;
    for (const auto& f : frames)
      if (f.contains("stream")) (f["stream"] == "stdout" ? out : err) += f["data"].get<std::string>();
    CHECK(out == "a\n");
    CHECK(err == "b\n");
  }

  // Upload and download round-trip a directory (through the CLI, which makes and unpacks tars).
  TempDir local("bulwark-exec-files");
  std::filesystem::create_directories(local.file("tree/sub"));
  std::ofstream(local.file("tree/a.txt")) << "alpha\n";
  std::ofstream(local.file("tree/sub/b.bin")) << std::string("\0\x01\x02binary", 9);
  // Over the first message's 256 KiB of stdin and many 64 KiB output frames.
  std::string big(1536 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 2654435761u) >> 13);
  std::ofstream(local.file("tree/sub/big.bin"), std::ios::binary) << big;
  auto up = cli({"sandbox", "upload", id, local.file("tree"), "/tmp"}, suite.gateway_url());
  REQUIRE_MESSAGE(up.code == 0, up.err);
  r = post_exec(suite, id, {{"command", {"cat", "/tmp/tree/a.txt"}}});
  CHECK(r["stdout"] == "alpha\n");
  auto down = cli({"sandbox", "download", id, "/tmp/tree", local.file("back")}, suite.gateway_url());
  REQUIRE_MESSAGE(down.code == 0, down.err);
  CHECK(slurp(local.file("back/tree/a.txt")) == "alpha\n");
  CHECK(slurp(local.file("back/tree/sub/b.bin")) == std::string("\0\x01\x02binary", 9));
  CHECK(slurp(local.file("back/tree/sub/big.bin")) == big);

  // The sandbox's filesystem policy decides: /usr is read-only, so an upload there is refused.
  up = cli({"sandbox", "upload", id, local.file("tree"), "/usr"}, suite.gateway_url());
  CHECK(up.code == 7);  // 403
  CHECK(up.err.find("filesystem policy") != std::string::npos);
  CHECK(post_exec(suite, id, {{"command", {"ls", "/usr/tree"}}})["exit_code"] != 0);
  // Downloading what does not exist is 404.
  down = cli({"sandbox", "download", id, "/tmp/nothing-here", local.file("none")}, suite.gateway_url());
  CHECK(down.code == 3);

  // The CLI exits with the command's exit code, streaming and not.
  auto e = cli({"sandbox", "exec", id, "--", "sh", "-c", "echo via-cli; exit 4"}, suite.gateway_url());
  CHECK(e.code == 4);
  CHECK(e.out == "via-cli\n");
  e = cli({"sandbox", "exec", "--no-stream", id, "--", "sh", "-c", "echo x >&2; exit 0"}, suite.gateway_url());
  CHECK(e.code == 0);
  CHECK(e.err == "x\n");
}

TEST_CASE("exec needs a READY sandbox, or an EXITED one created with keep_after_exit") {
  Suite suite;
  auto s = suite.create({{"command", {"sh", "-c", "exit 0"}}});
  std::string id = s["sandbox_id"];
  s = suite.wait_phase(id, {"EXITED", "FAILED"});
  REQUIRE_MESSAGE(s["phase"] == "EXITED", s.dump(2));
  auto r = post_exec(suite, id, {{"command", {"true"}}}, 409);
  CHECK(r["error"]["code"] == "failed_precondition");
  CHECK(r["error"]["message"].get<std::string>().find("keep_after_exit") != std::string::npos);
}

TEST_CASE("connect: a PTY shell over the gateway's WebSocket sees its size, and the new one after a resize") {
  namespace beast = boost::beast;
  namespace websocket = beast::websocket;
  Suite suite;
  auto s = suite.create({{"command", {"sleep", "600"}}});
  std::string id = s["sandbox_id"];
  s = suite.wait_phase(id, {"READY", "FAILED", "EXITED"});
  REQUIRE_MESSAGE(s["phase"] == "READY", s.dump(2));
  std::string url = suite.gateway_url();
  std::string port = std::to_string(std::stoi(url.substr(url.rfind(':') + 1)) + 1);  // --connect-port's default
  const char* token = std::getenv("BULWARK_TOKEN");

  boost::asio::io_context ioc;
  websocket::stream<boost::asio::ip::tcp::socket> ws(ioc);
  boost::asio::ip::tcp::resolver resolver(ioc);
  boost::asio::connect(ws.next_layer(), resolver.resolve("127.0.0.1", port));
  ws.set_option(websocket::stream_base::decorator([&](websocket::request_type& req) {
    if (token) req.set(beast::http::field::authorization, std::string("Bearer ") + token);
  }));
  ws.handshake("127.0.0.1:" + port, "/v1/sandboxes/" + id + "/connect?rows=33&cols=101&command=sh&command=-c&command=" +
                                        "stty%20size%3B%20read%20line%3B%20stty%20size");
  std::string out;
  std::optional<int> code;
  auto read_until = [&](const std::function<bool()>& done) {
    while (!done()) {
      beast::flat_buffer buf;
      beast::error_code ec;
      ws.read(buf, ec);
      if (ec) break;
      std::string data = beast::buffers_to_string(buf.data());
      if (ws.got_binary()) out += data;
      else code = json::parse(data).value("exit_code", -1);
    }
  };
  read_until([&] { return out.find("33 101") != std::string::npos || code; });
  CHECK(out.find("33 101") != std::string::npos);
  ws.text(true);
  ws.write(boost::asio::buffer(std::string(R"({"resize":{"rows":40,"cols":120}})")));
  ws.binary(true);
  ws.write(boost::asio::buffer(std::string("\n")));
  read_until([&] { return code.has_value(); });
  CHECK(out.find("40 120") != std::string::npos);
  CHECK(code == 0);

  // Refused before the upgrade, with the API's JSON error: an unknown sandbox.
  websocket::stream<boost::asio::ip::tcp::socket> ws2(ioc);
  boost::asio::connect(ws2.next_layer(), resolver.resolve("127.0.0.1", port));
  ws2.set_option(websocket::stream_base::decorator([&](websocket::request_type& req) {
    if (token) req.set(beast::http::field::authorization, std::string("Bearer ") + token);
  }));
  websocket::response_type res;
  beast::error_code ec;
  // Async: Boost 1.74's sync handshake drops the response of a refusal.
  ws2.async_handshake(res, "127.0.0.1:" + port, "/v1/sandboxes/no-such-sandbox/connect", [&](beast::error_code e) { ec = e; });
  ioc.run();
  CHECK(ec);
  CHECK_MESSAGE(res.result_int() == 404, ec.message());
  CHECK(json::parse(res.body())["error"]["code"] == "not_found");
  // And the CLI says so.
  auto c = cli({"sandbox", "connect", "no-such-sandbox"}, suite.gateway_url());
  CHECK(c.code == 3);
  CHECK(c.err.find("no-such-sandbox") != std::string::npos);
}
