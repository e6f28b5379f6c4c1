// /v1/status's parts: the driver table (pure, time passed in) and the board with a fake probe.
#include "services/gateway-api/status.h"

#include <doctest/doctest.h>

#include "services/gateway-api/test_fakes.h"
#include "shared/util.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::gateway;
using namespace std::chrono_literals;

namespace {
v1::DriverHeartbeat beat(const std::string& id, uint32_t interval_ms, uint32_t capacity = 8, uint32_t free_slots = 5) {
  v1::DriverHeartbeat hb;
  hb.set_driver_id(id);
  hb.set_kind("podman");
  hb.set_capacity(capacity);
  hb.set_free_slots(free_slots);
  hb.set_interval_ms(interval_ms);
  return hb;
}
}  // namespace

TEST_CASE("drivers live until 3 of their intervals pass; the last heartbeat wins") {
  DriverTable t;
  auto t0 = StatusClock::time_point{} + 1h;
  t.observe(beat("fast", 100), t0);
  t.observe(beat("slow", 1000), t0);
  t.observe(beat("", 100), t0);  // no id: ignored
  CHECK(t.live(t0).size() == 2);
  t.observe(beat("slow", 1000, 8, 1), t0 + 200ms);
  auto at_250 = t.live(t0 + 250ms);
  REQUIRE(at_250.size() == 2);
  CHECK(at_250[1].driver_id() == "slow");
  CHECK(at_250[1].free_slots() == 1);
  auto at_400 = t.live(t0 + 400ms);  // fast: 400 ms > 3 x 100 ms
  REQUIRE(at_400.size() == 1);
  CHECK(at_400[0].driver_id() == "slow");
  CHECK(t.live(t0 + 3201ms).empty());
  // No interval stated: 1 s is assumed.
  t.observe(beat("quiet", 0), t0);
  CHECK(t.live(t0 + 2900ms).size() == 1);
  CHECK(t.live(t0 + 3100ms).empty());
}

TEST_CASE("the board: version, NATS, drivers, services live or not and why, sandboxes by phase") {
  testing::TempDir dir;
  Store store(dir.file("g.db"));
  fakes::FakeProbe probe;
  probe.live = {"gateway-api", "scheduler"};
  probe.silent = {"policy-service"};
  StatusBoard board(store, probe, [] { return true; }, "gateway-api-abcd");
  bool created = false;
  v1::Sandbox s;
  s.set_sandbox_id("s1");
  s.set_name("one");
  s.set_phase(v1::READY);
  *s.mutable_created_at() = now_timestamp();
  store.insert(s, "", &created);
  board.on_heartbeat(beat("podman-a", 1000));

  auto r = board.get(100ms);
  CHECK(r.version() == kVersion);
  CHECK(r.instance_id() == "gateway-api-abcd");
  CHECK(r.nats_connected());
  CHECK(r.uptime_ms() >= 0);
  REQUIRE(r.drivers_size() == 1);
  CHECK(r.drivers(0).capacity() == 8);
  REQUIRE(r.services_size() == static_cast<int>(status_services().size()));
  CHECK(r.services(0).service() == "gateway-api");
  CHECK(r.services(0).live());
  CHECK(r.services(0).instance_id() == "gateway-api-1");
  CHECK(r.services(1).live());
  CHECK_FALSE(r.services(2).live());
  CHECK(r.services(2).error() == "no answer within 100 ms");
  CHECK_FALSE(r.services(3).live());
  CHECK(r.services(3).error().find("not running") != std::string::npos);
  CHECK(r.sandboxes_by_phase().size() == 9);  // every phase, zeros included
  CHECK(r.sandboxes_by_phase().at("STOPPED") == 0);
  CHECK(r.sandboxes_by_phase().at("READY") == 1);
  CHECK(r.sandboxes_by_phase().at("PENDING") == 0);
  CHECK(r.sandboxes_by_phase().count("PHASE_UNSPECIFIED") == 0);
}
