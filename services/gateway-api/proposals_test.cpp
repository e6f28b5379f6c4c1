#include "services/gateway-api/proposals.h"

#include <doctest/doctest.h>

#include "shared/error.h"
#include "shared/util.h"

using namespace bulwark;
using namespace bulwark::gateway;

namespace {
v1::Denial denial(const std::string& host, uint32_t port, const std::string& binary = "/usr/bin/curl",
                  const std::string& rule = "bulwark:default-deny", uint64_t version = 1) {
  v1::Denial d;
  d.set_layer("proxy");
  d.set_host(host);
  d.set_port(port);
  d.set_binary(binary);
  d.set_method("CONNECT");
  d.set_rule(rule);
  d.set_policy_version(version);
  d.set_reason("no endpoint matches");
  return d;
}
}  // namespace

TEST_CASE("propose: only a default deny of an identified binary to host:port becomes a rule") {
  auto p = propose(denial("API.Example.com", 443));
  REQUIRE(p);
  CHECK(p->host == "api.example.com");
  CHECK(p->port == 443);
  CHECK(p->binary == "/usr/bin/curl");
  CHECK(p->network_policy == "allow_api_example_com_443");
  CHECK(proposal_endpoint_yaml(*p) == "{ host: api.example.com, port: 443 }");
  CHECK_FALSE(propose(denial("a.test", 443, "")));                                    // unidentified: no binary to name
  CHECK_FALSE(propose(denial("a.test", 443, "/bin/x", "bulwark:binary-changed")));    // a new entry must not get past it
  CHECK_FALSE(propose(denial("169.254.169.254", 80, "/bin/x", "bulwark:always-blocked")));
  CHECK_FALSE(propose(denial("a.test", 443, "/bin/x", "network_policies.gh.endpoints[0]")));  // L7, by an entry
  CHECK_FALSE(propose(denial("a.test", 0)));
  CHECK_FALSE(propose(denial("a.test\n  evil: 1", 443)));  // never YAML injection
  auto audit = denial("a.test", 443);
  audit.set_audit(true);
  CHECK_FALSE(propose(audit));
  auto landlock = denial("a.test", 443);
  landlock.set_layer("landlock");
  CHECK_FALSE(propose(landlock));
  auto v6 = propose(denial("2001:db8::1", 5432));
  REQUIRE(v6);
  CHECK(proposal_endpoint_yaml(*v6) == "{ host: \"2001:db8::1\", port: 5432 }");
}

TEST_CASE("approval_request: add_endpoint under the proposal's key, with its binary, waiting for the ack") {
  Proposal p = *propose(denial("db.internal", 5432, "/usr/bin/psql"));
  p.sandbox_id = "sb1";
  p.proposal_id = 7;
  auto r = approval_request(p, 10000, "");
  CHECK(r.sandbox_id() == "sb1");
  CHECK(r.wait_ms() == 10000);
  CHECK(r.reason() == "approved proposal 7");
  REQUIRE(r.operations_size() == 1);
  const auto& a = r.operations(0).add_endpoint();
  CHECK(a.network_policy() == "allow_db_internal_5432");
  CHECK(a.endpoint_yaml() == "{ host: db.internal, port: 5432 }");
  REQUIRE(a.binaries_size() == 1);
  CHECK(a.binaries(0) == "/usr/bin/psql");
  auto j = to_json(p);
  CHECK(j["proposal_id"] == 7);
  CHECK(j["status"] == "pending");
  CHECK(j["endpoint_yaml"] == "{ host: db.internal, port: 5432 }");
  CHECK_FALSE(j.contains("approved_version"));
}

TEST_CASE("Proposals: identical denials are one row with hits; approve applies once; reject; per sandbox") {
  TempDir dir("bulwark-proposals");
  Proposals props(dir.file("gateway.db"));
  CHECK_FALSE(props.on_denial("sb1", denial("a.test", 443, "", "bulwark:default-deny"), 1000));
  auto first = props.on_denial("sb1", denial("a.test", 443), 1000);
  REQUIRE(first);
  auto again = props.on_denial("sb1", denial("a.test", 443), 2000);
  REQUIRE(again);
  CHECK(again->proposal_id == first->proposal_id);
  CHECK(again->hits == 2);
  CHECK(again->first_seen_ms == 1000);
  CHECK(again->last_seen_ms == 2000);
  auto other = props.on_denial("sb1", denial("b.test", 80), 3000);
  props.on_denial("sb2", denial("a.test", 443), 3000);
  auto pending = props.list("sb1");
  REQUIRE(pending.size() == 2);
  CHECK(pending[0].host == "a.test");
  CHECK(pending[1].host == "b.test");
  CHECK(props.list("sb2").size() == 1);

  // A failed policy update leaves it pending.
  CHECK_THROWS_AS(props.approve("sb1", first->proposal_id,
                                [](const Proposal&) -> uint64_t { throw Error(Code::kUnavailable, "policy-service is down"); }),
                  Error);
  CHECK(props.get("sb1", first->proposal_id).status == "pending");
  int applied = 0;
  auto ok = props.approve("sb1", first->proposal_id, [&](const Proposal& p) {
    ++applied;
    CHECK(p.host == "a.test");
    return uint64_t{2};
  });
  CHECK(ok.status == "approved");
  CHECK(ok.approved_version == 2);
  CHECK(applied == 1);
  try {
    props.approve("sb1", first->proposal_id, [&](const Proposal&) { return static_cast<uint64_t>(++applied); });
    FAIL("approved twice");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kFailedPrecondition);
  }
  CHECK(applied == 1);
  CHECK(props.list("sb1").size() == 1);  // b.test only
  CHECK(props.list("sb1", "").size() == 2);
  // Another sandbox's id is not found through this one.
  try {
    props.reject("sb2", other->proposal_id);
    FAIL("rejected another sandbox's proposal");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kNotFound);
    CHECK(e.field() == "proposal_id");
  }
  CHECK(props.reject("sb1", other->proposal_id).status == "rejected");
  // A rejected proposal does not come back when denied again; an approved one denied by a newer
  // version (its entry was removed since) does.
  props.on_denial("sb1", denial("b.test", 80, "/usr/bin/curl", "bulwark:default-deny", 5), 4000);
  CHECK(props.get("sb1", other->proposal_id).status == "rejected");
  props.on_denial("sb1", denial("a.test", 443, "/usr/bin/curl", "bulwark:default-deny", 2), 4000);
  CHECK(props.get("sb1", first->proposal_id).status == "approved");
  props.on_denial("sb1", denial("a.test", 443, "/usr/bin/curl", "bulwark:default-deny", 3), 5000);
  CHECK(props.get("sb1", first->proposal_id).status == "pending");
  props.drop_sandbox("sb1");
  CHECK(props.list("sb1", "").empty());
  CHECK(props.list("sb2").size() == 1);
}
