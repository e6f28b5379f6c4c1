// End to end over real processes: REST -> gateway-api -> NATS -> scheduler -> driver-podman ->
// podman container -> supervisor -> back.
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include "services/driver-podman/podman_client.h"
#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {
bool saw_phase(const json& s, const std::string& phase) {
  for (const auto& h : s["history"])
    if (h.value("phase", "") == phase) return true;
  return false;
}
std::vector<std::string> log_lines(Suite& suite, const std::string& id) {
  auto r = suite.client().Get("/v1/sandboxes/" + id + "/logs");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  std::vector<std::string> out;
  for (const auto& l : json::parse(r->body).value("lines", json::array())) out.push_back(l.value("line", ""));
  return out;
}
bool container_exists(const std::string& sandbox_id) {
  return podman::PodmanClient(podman_socket()).inspect_container("bulwark-" + sandbox_id).has_value();
}
}  // namespace

TEST_CASE("a sandbox runs its command in a real podman container: READY, output and exit code reach the gateway") {
  Suite suite;
  auto t0 = std::chrono::steady_clock::now();
  auto s = suite.create({{"name", "hello"}, {"command", {"sh", "-c", "echo hello; echo to-stderr >&2; exit 3"}}});
  CHECK(s["phase"] == "PENDING");
  std::string id = s["sandbox_id"];
  s = suite.wait_phase(id, {"EXITED", "FAILED"});
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  REQUIRE_MESSAGE(s["phase"] == "EXITED", s.dump(2));
  CHECK(saw_phase(s, "SCHEDULED"));
  CHECK(saw_phase(s, "STARTING"));
  CHECK(saw_phase(s, "READY"));
  CHECK(s["exit_code"] == 3);
  CHECK(s["supervisor_checked_in"] == true);
  CHECK(s["driver_id"] == suite.driver_id());
  MESSAGE("POST to EXITED: " << elapsed.count() << " ms");
  REQUIRE(wait_until([&] { return log_lines(suite, id).size() >= 2; }, 10s));
  auto lines = log_lines(suite, id);
  CHECK(std::find(lines.begin(), lines.end(), "hello") != lines.end());
  CHECK(std::find(lines.begin(), lines.end(), "to-stderr") != lines.end());
}

TEST_CASE("deleting a sandbox removes its container") {
  Suite suite;
  auto s = suite.create({{"command", {"sleep", "600"}}});
  std::string id = s["sandbox_id"];
  s = suite.wait_phase(id, {"READY", "FAILED"});
  REQUIRE_MESSAGE(s["phase"] == "READY", s.dump(2));
  CHECK(container_exists(id));
  auto r = suite.client().Delete("/v1/sandboxes/" + id);
  REQUIRE(r);
  CHECK(r->status == 202);
  s = suite.wait_phase(id, {"DELETED"});
  CHECK_FALSE(container_exists(id));
  // Deleted records stay for audit, out of the default listing; the name is free again.
  auto list = json::parse(suite.client().Get("/v1/sandboxes")->body);
  CHECK(list.value("sandboxes", json::array()).empty());
  auto all = json::parse(suite.client().Get("/v1/sandboxes?all=true")->body);
  CHECK(all["sandboxes"].size() == 1);
}

TEST_CASE("stop keeps the container and its files; start runs it again to READY; the phase rules are enforced") {
  Suite suite;
  // Each run appends to a file in /sandbox and prints it: the second run sees the first's line.
  auto s = suite.create({{"name", "pausable"},
                         {"command", {"sh", "-c", "echo run >> /sandbox/runs; echo runs=$(wc -l < /sandbox/runs); exec sleep 600"}}});
  std::string id = s["sandbox_id"];
  s = suite.wait_phase(id, {"READY", "FAILED"});
  REQUIRE_MESSAGE(s["phase"] == "READY", s.dump(2));
  REQUIRE(wait_until([&] { auto l = log_lines(suite, id); return std::find(l.begin(), l.end(), "runs=1") != l.end(); }, 10s));

  auto start_early = suite.client().Post("/v1/sandboxes/" + id + "/start", "{}", "application/json");
  REQUIRE(start_early);
  CHECK(start_early->status == 409);  // READY: nothing to start
  CHECK(json::parse(start_early->body)["error"]["field"] == "phase");
  auto bad = suite.client().Post("/v1/sandboxes/" + id + "/stop", R"({"grace_s": "soon"})", "application/json");
  REQUIRE(bad);
  CHECK(bad->status == 400);
  CHECK(json::parse(bad->body)["error"]["field"] == "grace_s");

  auto t0 = std::chrono::steady_clock::now();
  auto r = suite.client().Post("/v1/sandboxes/" + id + "/stop", R"({"grace_s": 5})", "application/json");
  REQUIRE(r);
  REQUIRE_MESSAGE(r->status == 200, r->body);
  MESSAGE("stop: " << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
                   << " ms");
  CHECK(json::parse(r->body)["phase"] == "STOPPED");
  CHECK(container_exists(id));
  std::this_thread::sleep_for(1500ms);  // the driver's poll reports the exit: the sandbox stays STOPPED
  CHECK(suite.get(id)["phase"] == "STOPPED");

  t0 = std::chrono::steady_clock::now();
  r = suite.client().Post("/v1/sandboxes/" + id + "/start", "", "application/json");
  REQUIRE(r);
  REQUIRE_MESSAGE(r->status == 202, r->body);
  CHECK(json::parse(r->body)["phase"] == "STARTING");
  s = suite.wait_phase(id, {"READY", "FAILED"});
  MESSAGE("start to READY: "
          << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count() << " ms");
  REQUIRE_MESSAGE(s["phase"] == "READY", s.dump(2));
  CHECK(s["supervisor_checked_in"] == true);
  REQUIRE(wait_until([&] { auto l = log_lines(suite, id); return std::find(l.begin(), l.end(), "runs=2") != l.end(); }, 10s));
}

TEST_CASE("a gateway restarted mid-way keeps its records and catches up on what happened meanwhile") {
  Suite suite;
  auto s = suite.create({{"name", "survivor"}, {"command", {"sh", "-c", "sleep 2; echo after-restart; exit 4"}}});
  std::string id = s["sandbox_id"];
  s = suite.wait_phase(id, {"READY", "FAILED"});
  REQUIRE_MESSAGE(s["phase"] == "READY", s.dump(2));
  suite.stop_gateway(SIGKILL);  // no chance to flush anything
  std::this_thread::sleep_for(3s);  // the agent exits while the gateway is down
  suite.start_gateway();
  auto again = suite.get("survivor");
  CHECK(again["sandbox_id"] == id);
  CHECK(again["created_at"] == s["created_at"]);
  CHECK(again["spec"] == s["spec"]);
  // The supervisor's reports were kept by JetStream and are applied on restart.
  again = suite.wait_phase(id, {"EXITED"}, 15s);
  CHECK(again["exit_code"] == 4);
  CHECK(wait_until([&] {
    auto lines = log_lines(suite, id);
    return std::find(lines.begin(), lines.end(), "after-restart") != lines.end();
  }, 10s));
}

TEST_CASE("with the podman driver stopped, a create fails within seconds saying which driver is missing") {
  Suite suite;
  SUBCASE("stopped cleanly (SIGTERM): the driver says it is draining") { suite.stop_driver(SIGTERM); }
  SUBCASE("killed (SIGKILL): the scheduler notices the missing heartbeats") { suite.stop_driver(SIGKILL); }
  auto t0 = std::chrono::steady_clock::now();
  auto s = suite.create({{"driver_kind", "podman"}, {"command", {"true"}}});
  s = suite.wait_phase(s["sandbox_id"], {"FAILED", "READY", "EXITED"}, 10s);
  auto elapsed = std::chrono::steady_clock::now() - t0;
  CHECK(s["phase"] == "FAILED");
  CHECK_MESSAGE(s["reason"].get<std::string>().find("no podman driver is running") != std::string::npos, s["reason"]);
  CHECK(elapsed < 5s);
}

TEST_CASE("a driver that comes back adopts its sandboxes and removes the ones deleted while it was away") {
  Suite suite;
  auto keep = suite.create({{"name", "keep"}, {"command", {"sleep", "600"}}});
  auto gone = suite.create({{"name", "gone"}, {"command", {"sleep", "600"}}});
  suite.wait_phase(keep["sandbox_id"], {"READY"});
  suite.wait_phase(gone["sandbox_id"], {"READY"});
  suite.stop_driver(SIGKILL);
  auto r = suite.client().Delete("/v1/sandboxes/gone");
  REQUIRE(r);
  auto s = suite.wait_phase(gone["sandbox_id"], {"DELETED"});
  CHECK(s["reason"].get<std::string>().find("unreachable") != std::string::npos);
  CHECK(container_exists(gone["sandbox_id"]));  // nobody could remove it yet
  suite.start_driver();
  CHECK(wait_until([&] { return !container_exists(gone["sandbox_id"]); }, 15s));
  CHECK(container_exists(keep["sandbox_id"]));
  CHECK(suite.get("keep")["phase"] == "READY");
}

TEST_CASE("bad REST input gets a 4xx with a JSON error naming the field, and creates nothing") {
  Suite suite;
  auto c = suite.client();
  auto expect = [&](const httplib::Result& r, int status, const std::string& field, const std::string& words) {
    REQUIRE(r);
    CHECK(r->status == status);
    auto body = json::parse(r->body, nullptr, false);
    REQUIRE_MESSAGE(!body.is_discarded(), r->body);
    CHECK(body["error"].value("field", "") == field);
    CHECK_MESSAGE(body["error"].value("message", "").find(words) != std::string::npos, r->body);
  };
  expect(c.Post("/v1/sandboxes", "{\"name\": ", "application/json"), 400, "", "malformed JSON");
  expect(c.Post("/v1/sandboxes", R"({"nmae": "x"})", "application/json"), 400, "nmae", "unknown field");
  expect(c.Post("/v1/sandboxes", R"({"command": "echo hi"})", "application/json"), 400, "command", "must be an array");
  expect(c.Post("/v1/sandboxes", R"({"name": "Not Valid"})", "application/json"), 400, "name", "lowercase");
  expect(c.Post("/v1/sandboxes", R"({"driver_kind": "lxc"})", "application/json"), 400, "driver_kind", "lxc");
  expect(c.Post("/v1/sandboxes", R"({"env": {"A": 1}})", "application/json"), 400, "env.A", "must be a string");
  expect(c.Post("/v1/sandboxes", "<xml/>", "text/xml"), 400, "Content-Type", "application/json");
  expect(c.Post("/v1/sandboxes", std::string(2 << 20, ' '), "application/json"), 413, "", "body over");
  expect(c.Get("/v1/sandboxes/nope"), 404, "sandbox_id", "nope");
  expect(c.Delete("/v1/sandboxes/nope"), 404, "sandbox_id", "nope");
  expect(c.Get("/v1/sandboxes?all=maybe"), 400, "all", "true or false");
  expect(c.Get("/v1/nothing-here"), 404, "", "no route");
  auto list = json::parse(c.Get("/v1/sandboxes?all=true")->body);
  CHECK(list.value("sandboxes", json::array()).empty());

  // Duplicate live names are refused; an Idempotency-Key repeat returns the first answer, status and all.
  suite.create({{"name", "dup"}, {"command", {"sleep", "60"}}});
  expect(c.Post("/v1/sandboxes", R"({"name": "dup"})", "application/json"), 409, "name", "already exists");
  httplib::Headers h = {{"Idempotency-Key", "ci-job-42"}};
  auto first = c.Post("/v1/sandboxes", h, R"({"name": "idem"})", "application/json");
  auto second = c.Post("/v1/sandboxes", h, R"({"name": "idem"})", "application/json");
  REQUIRE(first);
  REQUIRE(second);
  CHECK(first->status == 202);
  CHECK(second->status == 202);
  CHECK(second->body == first->body);
}

TEST_CASE("healthz reports the gateway and its NATS connection") {
  Suite suite;
  auto r = suite.client().Get("/healthz");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(json::parse(r->body)["nats"] == "connected");
}
