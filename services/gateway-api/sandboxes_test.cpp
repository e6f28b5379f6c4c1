// Sandbox operations with a real store and a scripted control plane (no NATS: that path is the
// integration test's).
#include <doctest/doctest.h>

#include <mutex>

#include "services/gateway-api/sandboxes.h"
#include "services/gateway-api/test_fakes.h"
#include "shared/error.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::gateway;
using namespace bulwark::gateway::fakes;
using namespace std::chrono_literals;

namespace {
v1::SandboxSpec spec_named(const std::string& n) {
  v1::SandboxSpec s;
  s.set_name(n);
  return s;
}
}  // namespace

TEST_CASE("normalize_spec fills defaults and names the bad field") {
  SandboxDefaults d;
  v1::SandboxSpec s;
  normalize_spec(s, d);
  CHECK(s.name().rfind("sandbox-", 0) == 0);
  CHECK(s.image() == d.image);
  CHECK(s.command_size() == 2);

  auto bad = [&](v1::SandboxSpec x, const std::string& field) {
    try {
      normalize_spec(x, d);
      FAIL("accepted a bad spec for " << field);
    } catch (const Error& e) {
      CHECK(e.code() == Code::kInvalidArgument);
      CHECK(e.field() == field);
    }
  };
  bad(spec_named("Bad_Name"), "name");
  auto k = spec_named("ok");
  k.set_driver_kind("lxc");
  bad(k, "driver_kind");
  auto e = spec_named("ok");
  (*e.mutable_env())["A=B"] = "x";
  bad(e, "env");
  auto c = spec_named("ok");
  c.add_command("");
  bad(c, "command[0]");
  auto ld = spec_named("ok");
  (*ld.mutable_env())["LD_PRELOAD"] = "/tmp/evil.so";
  bad(ld, "env.LD_PRELOAD");
  auto cpu = spec_named("ok");
  cpu.mutable_resources()->set_cpus(-1);
  bad(cpu, "resources.cpus");
  auto pids = spec_named("ok");
  pids.mutable_resources()->set_pids(3);
  bad(pids, "resources.pids");
  auto gpus = spec_named("ok");
  gpus.mutable_resources()->set_gpus(65);
  bad(gpus, "resources.gpus");
  auto sel = spec_named("ok");
  (*sel.mutable_driver_selector())[""] = "x";
  bad(sel, "driver_selector");
}

TEST_CASE("create places the sandbox; the supervisor's check-in makes it READY") {
  testing::TempDir dir;
  Store store(dir.file("g.db"));
  ScriptedControlPlane cp;
  Sandboxes sb(store, cp, {});
  bool created = false;
  auto s = sb.create(spec_named("one"), "", &created);
  CHECK(created);
  CHECK(s.phase() == v1::PENDING);
  REQUIRE(testing::wait_until([&] { return sb.get("one").phase() == v1::STARTING; }, 5s));
  {
    std::lock_guard l(cp.mu);  // version 1 of its policy was stored before placement
    REQUIRE(cp.policies.size() == 1);
    CHECK(cp.policies[0] == s.sandbox_id() + ": version: 1\n");
  }
  v1::StateReport r;
  r.set_sandbox_id(s.sandbox_id());
  r.set_source(v1::SOURCE_SUPERVISOR);
  r.set_kind(v1::REPORT_SUPERVISOR_CHECKED_IN);
  sb.on_report(r);
  CHECK(sb.get("one").phase() == v1::READY);
  CHECK(sb.get("one").driver_id() == "podman-test");

  sb.remove("one");
  REQUIRE(testing::wait_until([&] { return sb.get(s.sandbox_id()).phase() == v1::DELETED; }, 5s));
  std::lock_guard l(cp.mu);
  CHECK(cp.deleted == std::vector<std::string>{"podman-test/" + s.sandbox_id()});
}

TEST_CASE("stop asks the driver and keeps the record STOPPED; start makes it STARTING until the new run checks in") {
  testing::TempDir dir;
  Store store(dir.file("g.db"));
  ScriptedControlPlane cp;
  Sandboxes sb(store, cp, {});
  bool created = false;
  auto s = sb.create(spec_named("three"), "", &created);
  REQUIRE(testing::wait_until([&] { return sb.get("three").phase() == v1::STARTING; }, 5s));
  try {
    sb.stop("three", 1s);  // not READY yet
    FAIL("stopped a STARTING sandbox");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kFailedPrecondition);
    CHECK(e.field() == "phase");
  }
  v1::StateReport r;
  r.set_sandbox_id(s.sandbox_id());
  r.set_source(v1::SOURCE_SUPERVISOR);
  r.set_kind(v1::REPORT_SUPERVISOR_CHECKED_IN);
  *r.mutable_at() = now_timestamp();
  sb.on_report(r);
  REQUIRE(sb.get("three").phase() == v1::READY);
  CHECK(sb.stop("three", 1s).phase() == v1::STOPPED);
  CHECK_THROWS_AS(sb.stop("three", 1s), Error);
  auto started = sb.start("three");
  CHECK(started.phase() == v1::STARTING);
  CHECK_FALSE(started.supervisor_checked_in());
  {
    std::lock_guard l(cp.mu);
    CHECK(cp.stopped == std::vector<std::string>{"podman-test/" + s.sandbox_id()});
    CHECK(cp.started == std::vector<std::string>{"podman-test/" + s.sandbox_id()});
  }
  std::this_thread::sleep_for(5ms);  // the new run's reports are stamped after restarted_at
  *r.mutable_at() = now_timestamp();
  sb.on_report(r);
  v1::StateReport running;
  running.set_sandbox_id(s.sandbox_id());
  running.set_source(v1::SOURCE_DRIVER);
  running.set_kind(v1::REPORT_WORKLOAD_RUNNING);
  running.set_driver_id("podman-test");
  *running.mutable_at() = now_timestamp();
  sb.on_report(running);
  CHECK(sb.get("three").phase() == v1::READY);
}

TEST_CASE("a placement error becomes FAILED with the scheduler's reason") {
  testing::TempDir dir;
  Store store(dir.file("g.db"));
  ScriptedControlPlane cp;
  cp.place_error = Error(Code::kUnavailable, "no podman driver is running");
  Sandboxes sb(store, cp, {});
  bool created = false;
  sb.create(spec_named("two"), "", &created);
  REQUIRE(testing::wait_until([&] { return sb.get("two").phase() == v1::FAILED; }, 5s));
  CHECK(sb.get("two").reason() == "no podman driver is running");
}

TEST_CASE("a driver reporting a workload nobody owns is told to delete it") {
  testing::TempDir dir;
  Store store(dir.file("g.db"));
  ScriptedControlPlane cp;
  Sandboxes sb(store, cp, {});
  v1::StateReport r;
  r.set_sandbox_id("ghost");
  r.set_source(v1::SOURCE_DRIVER);
  r.set_driver_id("podman-x");
  r.set_kind(v1::REPORT_WORKLOAD_RUNNING);
  sb.on_report(r);
  CHECK(testing::wait_until([&] {
    std::lock_guard l(cp.mu);
    return cp.deleted.size() == 1 && cp.deleted[0] == "podman-x/ghost";
  }, 5s));
}

TEST_CASE("unknown sandboxes are a not_found naming what was asked for") {
  testing::TempDir dir;
  Store store(dir.file("g.db"));
  ScriptedControlPlane cp;
  Sandboxes sb(store, cp, {});
  try {
    sb.get("missing");
    FAIL("found");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kNotFound);
    CHECK(std::string(e.what()).find("missing") != std::string::npos);
  }
}
