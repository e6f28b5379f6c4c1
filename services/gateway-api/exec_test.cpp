#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "services/gateway-api/exec.h"
#include "shared/error.h"

using namespace bulwark;
using namespace bulwark::gateway;
using json = nlohmann::json;

namespace {
Code code_of(const std::function<void()>& fn, std::string* field = nullptr) {
  try {
    fn();
  } catch (const Error& e) {
    if (field) *field = e.field();
    return e.code();
  }
  FAIL("no error thrown");
  return Code::kInternal;
}
}  // namespace

TEST_CASE("exec body: every field, and the default timeout") {
  auto r = parse_exec_body(R"({"command":["sh","-c","echo hi"],"env":{"A":"1"},"workdir":"/tmp","stdin":"in","timeout_s":5})");
  CHECK(r.command_size() == 3);
  CHECK(r.env().at("A") == "1");
  CHECK(r.workdir() == "/tmp");
  CHECK(r.stdin() == "in");
  CHECK(r.timeout_ms() == 5000);
  CHECK(parse_exec_body(R"({"command":["true"]})").timeout_ms() == kDefaultExecTimeoutS * 1000);
}

TEST_CASE("exec body: bad bodies are refused naming the field") {
  std::string field;
  CHECK(code_of([] { parse_exec_body(R"({"command":[]})"); }, &field) == Code::kInvalidArgument);
  CHECK(field == "command");
  CHECK(code_of([] { parse_exec_body("{}"); }, &field) == Code::kInvalidArgument);
  CHECK(field == "command");
  CHECK(code_of([] { parse_exec_body(R"({"command":"ls"})"); }, &field) == Code::kInvalidArgument);
  CHECK(field == "command");
  CHECK(code_of([] { parse_exec_body(R"({"command":["ls", 3]})"); }, &field) == Code::kInvalidArgument);
  CHECK(code_of([] { parse_exec_body(R"({"command":["ls"],"cmd":1})"); }, &field) == Code::kInvalidArgument);
  CHECK(field == "cmd");
  CHECK(code_of([] { parse_exec_body(R"({"command":["ls"],"timeout_s":"5"})"); }, &field) == Code::kInvalidArgument);
  CHECK(field == "timeout_s");
  CHECK(code_of([] { parse_exec_body(R"({"command":["ls"],"timeout_s":0})"); }, &field) == Code::kInvalidArgument);
  CHECK(code_of([] { parse_exec_body(R"({"command":["ls"],"env":{"A":1}})"); }, &field) == Code::kInvalidArgument);
  CHECK(field == "env");
  CHECK(code_of([] { parse_exec_body(R"({"command":["ls"],"env":{"A=B":"1"}})"); }, &field) == Code::kInvalidArgument);
  CHECK(code_of([] { parse_exec_body(R"({"command":["ls"],"workdir":"rel"})"); }, &field) == Code::kInvalidArgument);
  CHECK(field == "workdir");
  CHECK(code_of([] { parse_exec_body("[1]"); }) == Code::kInvalidArgument);
  CHECK(code_of([] { parse_exec_body("{"); }) == Code::kInvalidArgument);
}

TEST_CASE("exec is allowed in READY, and in EXITED only with keep_after_exit") {
  v1::Sandbox s;
  s.set_sandbox_id("abc");
  s.set_phase(v1::READY);
  CHECK_NOTHROW(check_exec_allowed(s));
  s.set_phase(v1::EXITED);
  CHECK(code_of([&] { check_exec_allowed(s); }) == Code::kFailedPrecondition);
  s.mutable_spec()->set_keep_after_exit(true);
  CHECK_NOTHROW(check_exec_allowed(s));
  for (auto p : {v1::PENDING, v1::STARTING, v1::STOPPING, v1::DELETED, v1::FAILED}) {
    s.set_phase(p);
    CHECK(code_of([&] { check_exec_allowed(s); }) == Code::kFailedPrecondition);
  }
}

TEST_CASE("frames fold into the answer, and into NDJSON lines") {
  ExecCollector c;
  v1::ExecFrame f;
  f.set_started(true);
  c.add(f);
  CHECK(ndjson_line(f).empty());
  f.Clear();
  f.mutable_output()->set_stream(1);
  f.mutable_output()->set_data("a\xff");  // invalid UTF-8 must not break the JSON
  c.add(f);
  CHECK(json::parse(ndjson_line(f)) == json{{"stream", "stdout"}, {"data", "a\xef\xbf\xbd"}});
  f.mutable_output()->set_stream(2);
  f.mutable_output()->set_data("e");
  c.add(f);
  f.Clear();
  f.mutable_end()->set_exit_code(3);
  f.mutable_end()->set_duration_ms(12);
  c.add(f);
  REQUIRE(c.ended());
  auto j = json::parse(c.json());
  CHECK(j["exit_code"] == 3);
  CHECK(j["stdout"] == "a\xef\xbf\xbd");
  CHECK(j["stderr"] == "e");
  CHECK(j["timed_out"] == false);
  CHECK(j["truncated"] == false);
  CHECK(j["duration_ms"] == 12);
  CHECK_FALSE(j.contains("error"));
  auto line = ndjson_line(f);
  CHECK(line.back() == '\n');
  CHECK(json::parse(line)["exit_code"] == 3);
  CHECK(json::parse(ndjson_error(Error(Code::kTimeout, "slow")))["error"]["code"] == "timeout");
}

TEST_CASE("file transfer: tar commands and what their failures mean") {
  CHECK(untar_command("/sandbox/in") == std::vector<std::string>{"tar", "-x", "-o", "-f", "-", "-C", "/sandbox/in"});
  CHECK(tar_command("/sandbox/out/") == std::vector<std::string>{"tar", "-c", "-f", "-", "-C", "/sandbox", "out"});
  CHECK(tar_command("/etc") == std::vector<std::string>{"tar", "-c", "-f", "-", "-C", "/", "etc"});
  CHECK(tar_command("/") == std::vector<std::string>{"tar", "-c", "-f", "-", "-C", "/", "."});
  std::string field;
  CHECK(code_of([] { tar_command("relative"); }, &field) == Code::kInvalidArgument);
  CHECK(field == "path");
  CHECK(code_of([] { untar_command(""); }) == Code::kInvalidArgument);
  CHECK(tar_error("upload to", "/usr", 1, "tar: can't create 'x': Permission denied\n").code() == Code::kPermissionDenied);
  CHECK(tar_error("upload to", "/usr", 1, "tar: x: Read-only file system").code() == Code::kPermissionDenied);
  CHECK(tar_error("download of", "/nope", 1, "tar: /nope: No such file or directory").code() == Code::kNotFound);
  CHECK(tar_error("download of", "/x", 127, "cannot run 'tar'").code() == Code::kFailedPrecondition);
  auto e = tar_error("upload to", "/x", 2, "tar: short read\n");
  CHECK(e.code() == Code::kInvalidArgument);
  CHECK(std::string(e.what()).find("short read") != std::string::npos);
}

#include "services/gateway-api/exec_connect.h"

TEST_CASE("connect: the request target and resize messages") {
  auto t = parse_connect_target("/v1/sandboxes/demo/connect?rows=40&cols=120&command=sh&command=-c&command=stty%20size");
  CHECK(t.sandbox_ref == "demo");
  CHECK(t.rows == 40);
  CHECK(t.cols == 120);
  CHECK(t.command == std::vector<std::string>{"sh", "-c", "stty size"});
  auto d = parse_connect_target("/v1/sandboxes/abc/connect");
  CHECK(d.command == std::vector<std::string>{"sh"});
  CHECK(d.rows == 24);
  std::string field;
  CHECK(code_of([] { parse_connect_target("/v1/sandboxes/abc/exec"); }) == Code::kNotFound);
  CHECK(code_of([] { parse_connect_target("/v1/sandboxes//connect"); }) == Code::kNotFound);
  CHECK(code_of([] { parse_connect_target("/v1/sandboxes/a/connect?rows=0"); }, &field) == Code::kInvalidArgument);
  CHECK(field == "rows");
  CHECK(code_of([] { parse_connect_target("/v1/sandboxes/a/connect?cols=x"); }, &field) == Code::kInvalidArgument);
  CHECK(code_of([] { parse_connect_target("/v1/sandboxes/a/connect?shell=bash"); }, &field) == Code::kInvalidArgument);
  CHECK(field == "shell");
  CHECK(parse_resize(R"({"resize":{"rows":30,"cols":100}})") == std::make_pair(30u, 100u));
  CHECK_FALSE(parse_resize(R"({"resize":{"rows":0,"cols":100}})"));
  CHECK_FALSE(parse_resize(R"({"resize":{"rows":-1,"cols":100}})"));
  CHECK_FALSE(parse_resize("hello"));
}
