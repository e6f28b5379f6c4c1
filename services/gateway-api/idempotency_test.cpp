// Idempotency-Key: key rules, body fingerprints, the decision, and the kept answers in SQLite.
#include "services/gateway-api/idempotency.h"

#include <doctest/doctest.h>

#include "services/gateway-api/store.h"
#include "shared/error.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::gateway;

TEST_CASE("an Idempotency-Key is 1 to 255 visible ASCII characters") {
  check_idempotency_key("job-123");
  check_idempotency_key("5f1c2c8e-1b4d-4c1e-9b1a-0e6a1c9b7d11");
  check_idempotency_key(std::string(255, 'k'));
  for (const std::string& bad : {std::string(), std::string(256, 'k'), std::string("a b"), std::string("tab\t"), std::string("\xc3\xa9")}) {
    try {
      check_idempotency_key(bad);
      FAIL("accepted '" << bad << "'");
    } catch (const Error& e) {
      CHECK(e.code() == Code::kInvalidArgument);
      CHECK(e.field() == "Idempotency-Key");
    }
  }
}

TEST_CASE("fingerprints: the same JSON in any spelling matches, a different one does not") {
  auto a = request_fingerprint(R"({"name":"ci-1","command":["sh","-c","echo hi"]})");
  CHECK(a.size() == 64);
  CHECK(request_fingerprint("{ \"command\": [\"sh\", \"-c\", \"echo hi\"],\n  \"name\": \"ci-1\" }") == a);
  CHECK(request_fingerprint(R"({"name":"ci-2","command":["sh","-c","echo hi"]})") != a);
  CHECK(request_fingerprint(R"({"name":"ci-1","command":["sh","echo hi","-c"]})") != a);  // order of arrays counts
  CHECK(request_fingerprint("") == request_fingerprint("{}"));  // an empty body is {}
  CHECK(request_fingerprint("not json") != request_fingerprint("not  json"));
}

TEST_CASE("decide: new key runs, same body replays, other body conflicts") {
  CHECK(decide_idempotency(std::nullopt, "f1") == IdempotencyDecision::kRun);
  CHECK(decide_idempotency(std::string("f1"), "f1") == IdempotencyDecision::kReplay);
  CHECK(decide_idempotency(std::string("f1"), "f2") == IdempotencyDecision::kConflict);
}

TEST_CASE("kept answers: per scope and key, expired ones ignored and pruned") {
  testing::TempDir dir;
  Store st(dir.file("g.db"));
  st.save_idempotent("POST /v1/sandboxes", "k1", {"fp", 202, R"({"sandbox_id":"x"})", 1000});
  auto r = st.find_idempotent("POST /v1/sandboxes", "k1", 0);
  REQUIRE(r);
  CHECK(r->status == 202);
  CHECK(r->body == R"({"sandbox_id":"x"})");
  CHECK(r->fingerprint == "fp");
  CHECK_FALSE(st.find_idempotent("POST /v1/providers", "k1", 0));  // scopes are apart
  CHECK_FALSE(st.find_idempotent("POST /v1/sandboxes", "k1", 1001));  // too old
  st.save_idempotent("POST /v1/sandboxes", "k2", {"fp2", 201, "{}", 5000});
  CHECK(st.prune_idempotent(2000) == 1);
  CHECK_FALSE(st.find_idempotent("POST /v1/sandboxes", "k1", 0));
  CHECK(st.find_idempotent("POST /v1/sandboxes", "k2", 0));
}

TEST_CASE("KeyLocks: the same key always gets the same mutex") {
  KeyLocks locks;
  CHECK(&locks.of("POST /v1/sandboxes", "k") == &locks.of("POST /v1/sandboxes", "k"));
}
