#include <doctest/doctest.h>

#include "shared/metrics.h"
#include "supervisor/supervisor_metrics.h"

using namespace bulwark::supervisor;

TEST_CASE("decisions are named allowed, denied or audit") {
  CHECK(std::string(decision_name(true, false)) == "allowed");
  CHECK(std::string(decision_name(false, false)) == "denied");
  CHECK(std::string(decision_name(true, true)) == "audit");
}

TEST_CASE("the supervisor's metrics render by layer and decision") {
  count_decision("proxy", "denied");
  count_decision("proxy", "denied");
  count_decision("proxy", "allowed");
  set_policy_version(3);
  set_agent_running(true);
  auto text = bulwark::metrics::registry().render();
  CHECK(text.find("bulwark_supervisor_decisions_total{layer=\"proxy\",decision=\"denied\"} 2\n") != std::string::npos);
  CHECK(text.find("bulwark_supervisor_decisions_total{layer=\"proxy\",decision=\"allowed\"} 1\n") != std::string::npos);
  CHECK(text.find("bulwark_supervisor_policy_version 3\n") != std::string::npos);
  CHECK(text.find("bulwark_supervisor_agent_running 1\n") != std::string::npos);
}
