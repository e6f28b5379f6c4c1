#include <doctest/doctest.h>

#include "services/driver-docker/container_spec.h"
#include "services/driver-docker/state.h"

using namespace bulwark;
using namespace bulwark::docker;
using nlohmann::json;

namespace {
json listed(const std::string& sandbox, const std::string& state) {
  return {{"Id", "c-" + sandbox}, {"State", state}, {"Status", "whatever docker prints"},
          {"Labels", {{kSandboxLabel, sandbox}, {kDriverLabel, "docker-h"}}}};
}
json inspected(const std::string& status, int code, bool oom = false, const std::string& error = "") {
  return {{"Id", "c-1"},
          {"Config", {{"Labels", {{kSandboxLabel, "s1"}}}}},
          {"State", {{"Status", status}, {"Running", status == "running"}, {"ExitCode", code}, {"OOMKilled", oom}, {"Error", error}}}};
}
}  // namespace

TEST_CASE("docker's container states map to running / exited / neither") {
  struct Case {
    const char* state;
    bool running, exited;
  };
  for (auto c : {Case{"running", true, false}, Case{"paused", true, false}, Case{"restarting", true, false},
                 Case{"exited", false, true}, Case{"dead", false, true}, Case{"created", false, false},
                 Case{"removing", false, false}, Case{"something-new", false, false}}) {
    CAPTURE(c.state);
    auto s = status_from_list(listed("s1", c.state));
    CHECK(s.running() == c.running);
    CHECK(s.exited() == c.exited);
    CHECK(s.sandbox_id() == "s1");
    CHECK(s.workload_id() == "c-s1");
    CHECK(s.exit_code() == 0);  // the list never says
  }
  // Not ours, or not Bulwark's at all: no sandbox id, so the driver skips it.
  CHECK(status_from_list({{"Id", "x"}, {"State", "running"}, {"Labels", nullptr}}).sandbox_id().empty());
  CHECK(status_from_list(json::object()).sandbox_id().empty());
}

TEST_CASE("inspect gives the exit code, and why docker ended it when it knows") {
  auto s = status_from_inspect(inspected("exited", 3));
  CHECK(s.exited());
  CHECK_FALSE(s.running());
  CHECK(s.exit_code() == 3);
  CHECK(s.sandbox_id() == "s1");
  CHECK(exit_reason(inspected("exited", 3)).empty());
  CHECK(exit_reason(inspected("exited", 137, true)).find("memory limit") != std::string::npos);
  CHECK(exit_reason(inspected("exited", 127, false, "exec: no such file")) == "docker: exec: no such file");
  // Seen exited in the list, being removed by the time of the inspect: the code is still there.
  CHECK(status_from_inspect(inspected("removing", 137)).exit_code() == 137);
  auto r = status_from_inspect(inspected("running", 0));
  CHECK(r.running());
  CHECK_FALSE(r.exited());
  CHECK(status_from_inspect(json::object()).workload_id().empty());
}
