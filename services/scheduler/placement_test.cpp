#include <doctest/doctest.h>

#include "services/scheduler/placement.h"
#include "shared/error.h"

using namespace bulwark;
using namespace bulwark::scheduler;
using namespace std::chrono_literals;

namespace {
v1::DriverHeartbeat hb(const std::string& id, const std::string& kind, uint32_t free, bool draining = false) {
  v1::DriverHeartbeat h;
  h.set_driver_id(id);
  h.set_kind(kind);
  h.set_capacity(10);
  h.set_free_slots(free);
  h.set_interval_ms(1000);
  h.set_draining(draining);
  return h;
}
v1::SandboxSpec kind(const std::string& k) {
  v1::SandboxSpec s;
  s.set_driver_kind(k);
  return s;
}
std::string reason(const DriverRegistry& r, const v1::SandboxSpec& s, Clock::time_point now) {
  try {
    r.pick(s, now);
  } catch (const Error& e) {
    CHECK(e.code() == Code::kUnavailable);
    return e.what();
  }
  FAIL("pick succeeded");
  return "";
}
}  // namespace

TEST_CASE("picks the driver with the most free slots, of the requested kind") {
  DriverRegistry r;
  auto t = Clock::now();
  r.observe(hb("p1", "podman", 2), t);
  r.observe(hb("p2", "podman", 5), t);
  r.observe(hb("d1", "docker", 9), t);
  CHECK(r.pick(kind("podman"), t) == "p2");
  CHECK(r.pick(kind(""), t) == "d1");
  CHECK(r.pick(kind("podman"), t, {"p2"}) == "p1");
}

TEST_CASE("reserve counts placements until the next heartbeat") {
  DriverRegistry r;
  auto t = Clock::now();
  r.observe(hb("p1", "podman", 1), t);
  r.reserve("p1");
  CHECK(reason(r, kind("podman"), t).find("at capacity") != std::string::npos);
  r.observe(hb("p1", "podman", 1), t);
  CHECK(r.pick(kind("podman"), t) == "p1");
}

TEST_CASE("drivers expire after three missed heartbeats, or at once when draining") {
  DriverRegistry r;
  auto t = Clock::now();
  r.observe(hb("p1", "podman", 3), t);
  CHECK(r.pick(kind(""), t + 2900ms) == "p1");
  CHECK(reason(r, kind(""), t + 3100ms).find("no compute driver is running") != std::string::npos);
  r.observe(hb("p1", "podman", 3), t);
  r.observe(hb("p1", "podman", 3, true), t);
  CHECK(r.live(t).empty());
}

TEST_CASE("the reasons say what to start") {
  DriverRegistry r;
  auto t = Clock::now();
  CHECK(reason(r, kind("podman"), t) == "no podman driver is running: start bulwark-driver-podman");
  r.observe(hb("d1", "docker", 1), t);
  CHECK(reason(r, kind("podman"), t).find("no podman driver is running (1 driver(s) of other kinds are)") == 0);
  r.observe(hb("p1", "podman", 0), t);
  CHECK(reason(r, kind("podman"), t) == "all 1 podman driver(s) are at capacity: delete sandboxes or add a driver");
}

TEST_CASE("driver_selector: only drivers whose labels include every pair; the reason names the labels") {
  DriverRegistry r;
  auto t = Clock::now();
  auto a = hb("a", "podman", 9);
  (*a.mutable_labels())["zone"] = "eu";
  auto b = hb("b", "podman", 5);
  (*b.mutable_labels())["zone"] = "us";
  (*b.mutable_labels())["disk"] = "ssd";
  r.observe(a, t);
  r.observe(b, t);
  auto s = kind("");
  (*s.mutable_driver_selector())["zone"] = "us";
  CHECK(r.pick(s, t) == "b");  // fewer free slots, but the only one in zone us
  (*s.mutable_driver_selector())["disk"] = "hdd";
  auto why = reason(r, s, t);
  CHECK(why.find("disk=hdd,zone=us") != std::string::npos);
  try {
    r.pick(s, t);
  } catch (const Error& e) {
    CHECK(e.field() == "driver_selector");
  }
}

TEST_CASE("GPUs: only drivers with that many free; reserve takes them until the next heartbeat") {
  DriverRegistry r;
  auto t = Clock::now();
  auto a = hb("a", "docker", 9);
  auto g = hb("g", "docker", 2);
  g.set_gpus_free(2);
  r.observe(a, t);
  r.observe(g, t);
  auto s = kind("");
  s.mutable_resources()->set_gpus(2);
  CHECK(r.pick(s, t) == "g");
  r.reserve("g", 2);
  auto why = reason(r, s, t);
  CHECK(why.find("2 free GPU(s)") != std::string::npos);
  s.mutable_resources()->set_gpus(0);
  CHECK(r.pick(s, t) == "a");
  r.observe(g, t);  // the heartbeat says the GPUs are free again
  s.mutable_resources()->set_gpus(1);
  CHECK(r.pick(s, t) == "g");
}
