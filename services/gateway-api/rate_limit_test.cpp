// The token bucket and the per-client limiter, with time passed in.
#include "services/gateway-api/rate_limit.h"

#include <doctest/doctest.h>

using namespace bulwark::gateway;
using namespace std::chrono_literals;

TEST_CASE("a token bucket allows a burst, then the rate, and says how long to wait") {
  auto t0 = RateClock::time_point{} + 1h;
  TokenBucket b(10, 3, t0);  // 10/s, bursts of 3
  CHECK(b.take(t0) == 0ms);
  CHECK(b.take(t0) == 0ms);
  CHECK(b.take(t0) == 0ms);
  CHECK(b.take(t0) == 100ms);        // one token every 100 ms
  CHECK(b.take(t0 + 50ms) == 50ms);  // half a token there: 50 ms more
  CHECK(b.take(t0 + 100ms) == 0ms);
  CHECK(b.take(t0 + 100ms) == 100ms);
  // Idle time refills up to the burst, never more.
  CHECK_FALSE(b.full_at(t0 + 200ms));
  CHECK(b.full_at(t0 + 500ms));
  for (int i = 0; i < 3; ++i) CHECK(b.take(t0 + 10s) == 0ms);
  CHECK(b.take(t0 + 10s) > 0ms);
  // A clock that goes backwards refills nothing and breaks nothing.
  CHECK(b.take(t0) > 0ms);
}

TEST_CASE("a slow rate waits seconds; Retry-After rounds up to whole seconds") {
  auto t0 = RateClock::time_point{} + 1h;
  TokenBucket b(0.5, 1, t0);
  CHECK(b.take(t0) == 0ms);
  CHECK(b.take(t0) == 2000ms);
  CHECK(retry_after_seconds(2000ms) == "2");
  CHECK(retry_after_seconds(1ms) == "1");
  CHECK(retry_after_seconds(1001ms) == "2");
}

TEST_CASE("the limiter keeps one bucket per client, forgets idle ones, and 0 disables it") {
  auto t0 = RateClock::time_point{} + 1h;
  RateLimiter lim(1, 2);
  CHECK(lim.take("10.0.0.1", t0) == 0ms);
  CHECK(lim.take("10.0.0.1", t0) == 0ms);
  CHECK(lim.take("10.0.0.1", t0) == 1000ms);
  CHECK(lim.take("10.0.0.2", t0) == 0ms);  // another client has its own bucket
  CHECK(lim.clients() == 2);
  CHECK(lim.take("10.0.0.3", t0 + 1h) == 0ms);  // pruning: the others were full again
  CHECK(lim.clients() == 1);

  RateLimiter off(0, 10);
  CHECK_FALSE(off.enabled());
  for (int i = 0; i < 1000; ++i) CHECK(off.take("x", t0) == 0ms);

  // Bounded memory under many addresses: past max_clients nobody new is remembered.
  RateLimiter small(1, 1, 2);
  CHECK(small.take("a", t0) == 0ms);
  CHECK(small.take("b", t0) == 0ms);
  CHECK(small.take("c", t0) == 0ms);
  CHECK(small.clients() == 2);
  CHECK(small.take("a", t0) == 1000ms);
}
