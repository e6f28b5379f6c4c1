// The bus against a real nats-server with JetStream.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <ctime>

#include "bulwark/v1/common.pb.h"
#include "bulwark/v1/sandbox.pb.h"
#include "shared/bus.h"
#include "shared/nats_auth.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace std::chrono_literals;

TEST_CASE("connecting to an absent server fails fast with the URL and what to do") {
  int port = testing::free_port();
  std::string url = "nats://127.0.0.1:" + std::to_string(port);
  try {
    Bus::connect({url, "t", 300ms});
    FAIL("connect should fail");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kUnavailable);
    CHECK(std::string(e.what()).find(url) != std::string::npos);
    CHECK(std::string(e.what()).find("nats-server") != std::string::npos);
  }
}

TEST_CASE("typed request/reply, error replies and no-responders") {
  testing::NatsServer nats;
  auto bus = Bus::connect({nats.url(), "t"});
  auto sub = bus->serve<v1::HealthRequest, v1::HealthReply>("t.health", "q", [](const v1::HealthRequest&) {
    v1::HealthReply r;
    r.set_service("x");
    return r;
  });
  auto failing = bus->serve<v1::HealthRequest, v1::HealthReply>("t.fail", "", [](const v1::HealthRequest&) -> v1::HealthReply {
    throw Error(Code::kNotFound, "no such thing", "thing_id");
  });
  bus->flush();
  CHECK(bus->request<v1::HealthReply>("t.health", v1::HealthRequest(), 2s).service() == "x");

  try {
    bus->request<v1::HealthReply>("t.fail", v1::HealthRequest(), 2s);
    FAIL("expected an error reply");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kNotFound);
    CHECK(std::string(e.what()) == "no such thing");
    CHECK(e.field() == "thing_id");
  }

  try {
    bus->request<v1::HealthReply>("t.nobody", v1::HealthRequest(), 2s);
    FAIL("expected no responders");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kUnavailable);
  }

  // Garbage bytes get an invalid_argument reply naming the expected type.
  try {
    bus->request("t.health", std::string("\xff\xff\xff", 3), 2s);
    FAIL("expected invalid_argument");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kInvalidArgument);
    CHECK(std::string(e.what()).find("HealthRequest") != std::string::npos);
  }
}

TEST_CASE("queue subscribers share the work") {
  testing::NatsServer nats;
  auto bus = Bus::connect({nats.url(), "t"});
  std::atomic<int> a{0}, b{0};
  auto s1 = bus->queue_subscribe("w", "g", [&](Msg&) { ++a; });
  auto s2 = bus->queue_subscribe("w", "g", [&](Msg&) { ++b; });
  bus->flush();
  for (int i = 0; i < 200; ++i) bus->publish("w", "x");
  bus->flush();
  REQUIRE(testing::wait_until([&] { return a + b == 200; }, 5s));
  CHECK(a > 0);
  CHECK(b > 0);
}

TEST_CASE("JetStream: a durable consumer catches up on what was published while it was away") {
  testing::NatsServer nats;
  auto bus = Bus::connect({nats.url(), "t"});
  bus->ensure_stream("S", {"s.>"}, std::chrono::seconds(3600));
  bus->ensure_stream("S", {"s.>"}, std::chrono::seconds(3600));  // idempotent
  v1::LogLine l;
  l.set_line("one");
  bus->js_publish("s.a", l);
  std::atomic<int> got{0};
  {
    auto sub = bus->js_durable_subscribe("S", "d", "s.>", [&](Msg& m) {
      CHECK(m.stream_seq() > 0);
      ++got;
      m.ack();
    });
    REQUIRE(testing::wait_until([&] { return got == 1; }, 5s));
  }
  l.set_line("two");
  bus->js_publish("s.b", l);  // nobody subscribed now
  auto bus2 = Bus::connect({nats.url(), "t2"});
  auto sub = bus2->js_durable_subscribe("S", "d", "s.>", [&](Msg& m) {
    ++got;
    m.ack();
  });
  CHECK(testing::wait_until([&] { return got == 2; }, 5s));
  CHECK(got == 2);
}

TEST_CASE("the connection survives a nats-server restart") {
  testing::NatsServer nats;
  auto bus = Bus::connect({nats.url(), "t"});
  std::atomic<int> got{0};
  auto sub = bus->subscribe("r", [&](Msg&) { ++got; });
  nats.restart();
  REQUIRE(testing::wait_until([&] { return bus->connected(); }, 10s));
  REQUIRE(testing::wait_until([&] {
    bus->publish("r", "x");
    return got > 0;
  }, 10s));
}

TEST_CASE("a nonce signature that starts with a zero byte fails that attempt before it is sent") {
  nats_Open(-1);  // nats_Sign needs the library initialised, as a connect does
  NonceSigner signer{nats_auth::KeyPair::create(nats_auth::KeyType::kUser).encoded_seed()};
  int zero = 0, sent = 0;
  for (int i = 0; i < 4000 && (zero == 0 || sent == 0); ++i) {  // 1 signature in 256 starts with 0
    std::string nonce = "nonce-" + std::to_string(i);
    unsigned char* sig = nullptr;
    int len = 0;
    char* err = nullptr;
    natsStatus s = NonceSigner::callback(&err, &sig, &len, nonce.c_str(), &signer);
    if (s == NATS_OK) {
      ++sent;
      CHECK(len == 64);
      CHECK(sig[0] != 0);
      CHECK(err == nullptr);
    } else {
      ++zero;
      CHECK(sig == nullptr);
      REQUIRE(err != nullptr);
      CHECK(std::string(err).find("nats.c#705") != std::string::npos);
    }
    std::free(sig);
    std::free(err);
  }
  CHECK(zero > 0);
  CHECK(sent > 0);
  CHECK(signer.refused.load() == zero);
}

TEST_CASE("a service with credentials is never refused for libnats' dropped signatures (1000 connects)") {
  using namespace nats_auth;
  auto op = KeyPair::create(KeyType::kOperator), sys = KeyPair::create(KeyType::kAccount),
       account = KeyPair::create(KeyType::kAccount);
  int64_t now = std::time(nullptr);
  testing::NatsServer nats(server_config(operator_jwt(op, "op", sys.public_key(), now), sys.public_key(),
                                         {{sys.public_key(), account_jwt(op, sys.public_key(), "SYS", false, now)},
                                          {account.public_key(), account_jwt(op, account.public_key(), "app", true, now)}}));
  std::string creds = new_user_creds(account, "scheduler", service_permissions("scheduler"), now);
  // Before NonceSigner about 4 of these 1000 were refused as "Authorization Violation".
  int refused = 0;
  std::string first_error;
  for (int i = 0; i < 1000; ++i) {
    try {
      Bus::Options o{nats.url(), "t", 0ms};
      o.creds = creds;
      Bus::connect(o)->flush();
    } catch (const Error& e) {
      if (refused++ == 0) first_error = e.what();
    }
  }
  CHECK_MESSAGE(refused == 0, first_error);
}
