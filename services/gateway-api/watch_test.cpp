#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "services/gateway-api/watch.h"
#include "shared/error.h"

using namespace bulwark;
using namespace bulwark::gateway;
using namespace std::chrono_literals;

namespace {
constexpr int64_t kNow = 1'790'000'000'000;  // ms
}

TEST_CASE("since: durations back from now and RFC 3339 times") {
  CHECK(parse_since("90s", kNow) == kNow - 90'000);
  CHECK(parse_since("5m", kNow) == kNow - 300'000);
  CHECK(parse_since("1h30m", kNow) == kNow - 5'400'000);
  CHECK(parse_since("2d", kNow) == kNow - 172'800'000);
  CHECK(parse_since("250ms", kNow) == kNow - 250);
  CHECK(parse_since("2026-11-30T03:00:00Z", kNow) == 1'796'007'600'000);
  CHECK(parse_since("2026-11-30T04:00:00+01:00", kNow) == 1'796'007'600'000);
  CHECK(parse_since("2026-11-30t03:00:00.5z", kNow) == 1'796'007'600'500);
}

TEST_CASE("since: a bad value names the field") {
  for (const char* bad : {"", "5", "m", "5x", "-5m", "5m ", "yesterday", "2026-13-30T03:00:00Z", "2026-11-30T03:00:00",
                          "99999999999d"}) {
    CAPTURE(bad);
    try {
      parse_since(bad, kNow);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.code() == Code::kInvalidArgument);
      CHECK(e.field() == "since");
    }
  }
}

TEST_CASE("a phase change is an SSE frame carrying sandbox_id, at and both phases") {
  v1::Sandbox s;
  s.set_sandbox_id("sb1");
  s.set_name("web");
  s.set_owner("tok1");
  s.set_phase(v1::EXITED);
  s.set_exit_code(3);
  s.set_reason("agent exited");
  s.mutable_updated_at()->set_seconds(1'796'007'600);
  auto e = phase_event(s, v1::READY);
  CHECK(e.kind == "phase");
  CHECK(e.owner == "tok1");
  CHECK(e.phase == v1::EXITED);
  auto frame = sse_frame(e);
  REQUIRE(frame.rfind("event: phase\ndata: ", 0) == 0);
  CHECK(frame.ends_with("\n\n"));
  auto d = nlohmann::json::parse(frame.substr(frame.find("data: ") + 6));
  CHECK(d["sandbox_id"] == "sb1");
  CHECK(d["at"] == "2026-11-30T03:00:00Z");
  CHECK(d["phase"] == "EXITED");
  CHECK(d["previous_phase"] == "READY");
  CHECK(d["exit_code"] == 3);
}

TEST_CASE("only denial lines become denial events") {
  v1::LogLine l;
  l.set_sandbox_id("sb1");
  l.set_stream("stdout");
  l.set_line("hello");
  CHECK_FALSE(denial_event(l, "").has_value());
  l.set_stream("denial");
  l.set_line("denied: direct tcp to 192.0.2.10:80");
  l.mutable_denial()->set_layer("network");
  l.mutable_denial()->set_host("192.0.2.10");
  auto e = denial_event(l, "tok");
  REQUIRE(e.has_value());
  auto d = nlohmann::json::parse(e->data);
  CHECK(d["denial"]["layer"] == "network");
  CHECK(d["denial"]["host"] == "192.0.2.10");
  CHECK(d["line"] == "denied: direct tcp to 192.0.2.10:80");
  CHECK(d.contains("at"));
  CHECK(e->data.find('\n') == std::string::npos);  // one SSE data line
}

TEST_CASE("the hub: filtered, bounded, and a dropped subscription is forgotten") {
  Watchers hub;
  auto mine = hub.subscribe([](const WatchEvent& e) { return e.sandbox_id == "a"; }, 2);
  auto all = hub.subscribe(nullptr);
  CHECK(hub.subscribers() == 2);
  for (int i = 0; i < 3; ++i) hub.publish(WatchEvent{.kind = "log", .sandbox_id = "a", .data = std::to_string(i)});
  hub.publish(WatchEvent{.kind = "log", .sandbox_id = "b", .data = "b"});
  // Bounded: the oldest went.
  CHECK(mine->dropped() == 1);
  CHECK(mine->next(0ms)->data == "1");
  CHECK(mine->next(0ms)->data == "2");
  CHECK_FALSE(mine->next(10ms).has_value());
  int n = 0;
  while (all->next(0ms)) ++n;
  CHECK(n == 4);
  // A waiting reader wakes on publish.
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    hub.publish(WatchEvent{.kind = "phase", .sandbox_id = "a"});
  });
  auto got = mine->next(5s);
  t.join();
  REQUIRE(got.has_value());
  CHECK(got->kind == "phase");
  mine.reset();
  CHECK(hub.subscribers() == 1);
}

TEST_CASE("a follow ends after these phases") {
  CHECK(has_ended(v1::EXITED));
  CHECK(has_ended(v1::DELETED));
  CHECK(has_ended(v1::FAILED));
  CHECK_FALSE(has_ended(v1::READY));
  CHECK_FALSE(has_ended(v1::STARTING));
}
