#include <doctest/doctest.h>

#include <sstream>

#include "cli/exec_ops.h"

using namespace bulwark::cli;
using nlohmann::json;

TEST_CASE("exec body from the command line") {
  auto b = exec_body({"sh", "-c", "echo hi"}, {"A=1", "B=x=y"}, "/tmp", std::string("in"), 30);
  CHECK(b == json{{"command", {"sh", "-c", "echo hi"}}, {"env", {{"A", "1"}, {"B", "x=y"}}}, {"workdir", "/tmp"}, {"stdin", "in"}, {"timeout_s", 30}});
  CHECK(exec_body({"ls"}, {}, "", std::nullopt, 0) == json{{"command", {"ls"}}});
  CHECK_THROWS_AS(exec_body({}, {}, "", std::nullopt, 0), CliError);
  CHECK_THROWS_AS(exec_body({"ls"}, {"NOEQUALS"}, "", std::nullopt, 0), CliError);
  CHECK_THROWS_AS(exec_body({"ls"}, {"=v"}, "", std::nullopt, 0), CliError);
}

TEST_CASE("NDJSON lines are split across reads") {
  LineSplitter s;
  std::vector<std::string> lines;
  auto on = [&](const std::string& l) { lines.push_back(l); };
  s.feed("{\"a\":1}\n{\"b\"", 12, on);
  CHECK(lines == std::vector<std::string>{"{\"a\":1}"});
  s.feed(":2}\n", 4, on);
  CHECK(lines == std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"});
  CHECK(s.rest().empty());
}

TEST_CASE("frames and results go to stdout/stderr; the end gives the exit code") {
  std::ostringstream out, err;
  CHECK_FALSE(apply_frame(json{{"stream", "stdout"}, {"data", "o"}}, out, err));
  CHECK_FALSE(apply_frame(json{{"stream", "stderr"}, {"data", "e"}}, out, err));
  CHECK(apply_frame(json{{"exit_code", 4}, {"timed_out", true}}, out, err) == 4);
  CHECK(out.str() == "o");
  CHECK(err.str().find("e") == 0);
  CHECK(err.str().find("timed out") != std::string::npos);
  CHECK_THROWS_AS(apply_frame(json{{"error", {{"code", "timeout"}, {"message", "slow"}}}}, out, err), CliError);
  std::ostringstream o2, e2;
  CHECK(apply_result(json{{"exit_code", 7}, {"stdout", "x"}, {"stderr", "y"}}, o2, e2) == 7);
  CHECK(o2.str() == "x");
  CHECK(e2.str() == "y");
}

TEST_CASE("HTTP errors map to the CLI's exit codes") {
  CHECK(http_error("exec", 404, R"({"error":{"code":"not_found","message":"no sandbox"}})").exit_code == kNotFound);
  CHECK(http_error("exec", 403, "{}").exit_code == kDenied);
  auto e = http_error("upload", 403, R"({"error":{"code":"permission_denied","message":"policy","field":"path"}})");
  CHECK(e.exit_code == kDenied);
  CHECK(e.message == "upload: policy [field: path]");
  CHECK(http_error("exec", 409, "not json").exit_code == kFailure);
}

TEST_CASE("paths and local tar commands") {
  CHECK(exec_path("demo", true) == "/v1/sandboxes/demo/exec?stream=true");
  CHECK(files_path("demo", "/sandbox/a b") == "/v1/sandboxes/demo/files?path=%2Fsandbox%2Fa%20b");
  CHECK_THROWS_AS(files_path("demo", "rel"), CliError);
  CHECK(local_tar_create("/tmp/dir/") == std::vector<std::string>{"tar", "-c", "-f", "-", "-C", "/tmp", "dir"});
  CHECK(local_tar_extract("out") == std::vector<std::string>{"tar", "-x", "-f", "-", "-C", "out"});
}

#include "cli/connect_ops.h"

TEST_CASE("connect: endpoint, target and messages") {
  auto ep = connect_endpoint("http://127.0.0.1:8080", -1);
  CHECK(ep.host == "127.0.0.1");
  CHECK(ep.port == "8081");
  CHECK(connect_endpoint("http://gw.local:9000/", 7000).port == "7000");
  CHECK(connect_endpoint("http://gw.local", -1).port == "81");
  CHECK(connect_endpoint("https://gw:1", -1).tls);  // wss:// (cli/client_test.cpp)
  CHECK_THROWS_AS(connect_endpoint("http://:80", -1), CliError);
  CHECK(connect_target("demo", 40, 120, {"sh", "-l"}) == "/v1/sandboxes/demo/connect?rows=40&cols=120&command=sh&command=-l");
  CHECK(json::parse(resize_message(30, 100)) == json{{"resize", {{"rows", 30}, {"cols", 100}}}});
  CHECK(exit_of_text_frame(R"({"exit_code":3})") == 3);
  CHECK_FALSE(exit_of_text_frame("not json"));
  CHECK_THROWS_AS(exit_of_text_frame(R"({"error":{"code":"unavailable","message":"gone"}})"), CliError);
}
