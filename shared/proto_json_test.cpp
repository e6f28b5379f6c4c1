#include <doctest/doctest.h>

#include "bulwark/v1/sandbox.pb.h"
#include "shared/error.h"
#include "shared/proto_json.h"

using namespace bulwark;

namespace {
Error parse_error(const std::string& body) {
  v1::SandboxSpec spec;
  try {
    json_to_message(body, &spec);
  } catch (const Error& e) {
    return e;
  }
  FAIL("expected an error for " << body);
  return Error(Code::kInternal, "");
}
}  // namespace

TEST_CASE("a valid spec parses, in snake_case or camelCase") {
  v1::SandboxSpec spec;
  json_to_message(R"({"name":"a","command":["sh","-c","echo hi"],"env":{"K":"V"},"driverKind":"podman"})", &spec);
  CHECK(spec.name() == "a");
  REQUIRE(spec.command_size() == 3);
  CHECK(spec.command(2) == "echo hi");
  CHECK(spec.env().at("K") == "V");
  CHECK(spec.driver_kind() == "podman");
}

TEST_CASE("bad JSON bodies name the field at fault") {
  auto e = parse_error(R"({"name": "a", "nmae": "b"})");
  CHECK(e.code() == Code::kInvalidArgument);
  CHECK(e.field() == "nmae");
  CHECK(std::string(e.what()).find("unknown field") != std::string::npos);

  e = parse_error(R"({"command": "echo hi"})");
  CHECK(e.field() == "command");
  CHECK(std::string(e.what()).find("must be an array") != std::string::npos);

  e = parse_error(R"({"command": ["ok", 3]})");
  CHECK(e.field() == "command[1]");

  e = parse_error(R"({"env": {"A": 1}})");
  CHECK(e.field() == "env.A");

  e = parse_error(R"({"name": 5})");
  CHECK(e.field() == "name");

  e = parse_error(R"([1,2])");
  CHECK(std::string(e.what()).find("JSON object") != std::string::npos);

  e = parse_error(R"({"name": )");
  CHECK(std::string(e.what()).find("malformed JSON") != std::string::npos);

  // Integers may be strings of digits (the mapping's 64-bit form); anything else names the field.
  v1::SandboxSpec ok;
  json_to_message(R"({"resources": {"memory_bytes": "1048576", "pids": 64}})", &ok);
  CHECK(ok.resources().memory_bytes() == 1048576);
  e = parse_error(R"({"resources": {"memory_bytes": "lots"}})");
  CHECK(e.field() == "resources.memory_bytes");
  e = parse_error(R"({"resources": {"pids": "-5"}})");
  CHECK(e.field() == "resources.pids");
  e = parse_error(R"({"resources": {"cpus": "two"}})");
  CHECK(e.field() == "resources.cpus");
}

TEST_CASE("messages print with proto field names and enum names") {
  v1::Sandbox s;
  s.set_sandbox_id("abc");
  s.set_phase(v1::READY);
  s.set_exit_code(0);  // optional: present even when zero
  auto j = message_to_json(s);
  CHECK(j.find(R"("sandbox_id":"abc")") != std::string::npos);
  CHECK(j.find(R"("phase":"READY")") != std::string::npos);
  CHECK(j.find(R"("exit_code":0)") != std::string::npos);
}
