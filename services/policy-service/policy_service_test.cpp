// policy-service: the pure merge and checks, then the service against a real nats-server -js.
#include <doctest/doctest.h>

#include <atomic>
#include <initializer_list>
#include <set>
#include <thread>

#include "bulwark/v1/policy.pb.h"
#include "services/policy-service/api.h"
#include "services/policy-service/merge.h"
#include "services/policy-service/store.h"
#include "shared/subjects.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::policy_service;
using namespace std::chrono_literals;
using Ops = google::protobuf::RepeatedPtrField<v1::PolicyOperation>;

namespace {

const std::string kSid = "0123456789abcdef";

const std::string kBase = R"(version: 1
# the agent's files
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /lib]
  read_write: [/sandbox, /tmp]
landlock:
  compatibility: best_effort
process:
  run_as_user: sandbox
  run_as_group: sandbox
network_policies:
  github:
    name: github
    endpoints:
      - { host: api.github.com, port: 443 }
      - host: github.com
        port: 443
        protocol: rest
        enforcement: enforce
        rules:
          - allow:
              method: GET
              path: "/**/info/refs*"
    binaries:
      - { path: /usr/bin/git }
)";

v1::PolicyOperation add_endpoint(const std::string& key, const std::string& yaml,
                                 std::vector<std::string> binaries = {}) {
  v1::PolicyOperation op;
  auto* a = op.mutable_add_endpoint();
  a->set_network_policy(key);
  a->set_endpoint_yaml(yaml);
  for (auto& b : binaries) a->add_binaries(b);
  return op;
}
v1::PolicyOperation remove_endpoint(const std::string& key, const std::string& host, uint32_t port) {
  v1::PolicyOperation op;
  auto* r = op.mutable_remove_endpoint();
  r->set_network_policy(key);
  r->set_host(host);
  r->set_port(port);
  return op;
}
template <class Setter>
v1::PolicyOperation rule_op(Setter set, const std::string& key, const std::string& host, uint32_t port,
                            const std::string& yaml, bool deny) {
  v1::PolicyOperation op;
  auto* r = set(op);
  r->set_network_policy(key);
  r->set_host(host);
  r->set_port(port);
  r->set_rule_yaml(yaml);
  r->set_deny(deny);
  return op;
}
v1::PolicyOperation add_rule(const std::string& key, const std::string& host, uint32_t port, const std::string& yaml,
                             bool deny = false) {
  return rule_op([](v1::PolicyOperation& o) { return o.mutable_add_rule(); }, key, host, port, yaml, deny);
}
v1::PolicyOperation remove_rule(const std::string& key, const std::string& host, uint32_t port, const std::string& yaml,
                                bool deny = false) {
  return rule_op([](v1::PolicyOperation& o) { return o.mutable_remove_rule(); }, key, host, port, yaml, deny);
}
v1::PolicyOperation remove_network_policy(const std::string& key) {
  v1::PolicyOperation op;
  op.mutable_remove_network_policy()->set_network_policy(key);
  return op;
}
Ops ops(std::initializer_list<v1::PolicyOperation> list) {
  Ops out;
  for (const auto& o : list) *out.Add() = o;
  return out;
}

policy::Policy parse(const std::string& yaml) { return policy::parse_policy(yaml, "test.yaml"); }

const policy::NetworkPolicy* find(const policy::Policy& p, const std::string& key) {
  for (const auto& np : p.network_policies)
    if (np.key == key) return &np;
  return nullptr;
}

// Runs fn, which must throw an Error; returns it.
template <class F>
Error error_of(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e;
  }
  FAIL("no error thrown");
  return Error(Code::kInternal, "unreachable");
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// ---------------------------------------------------------------- pure: merge and checks

TEST_CASE("sandbox ids are 16 lowercase hex digits") {
  CHECK(is_sandbox_id(kSid));
  CHECK_FALSE(is_sandbox_id("0123456789ABCDEF"));
  CHECK_FALSE(is_sandbox_id("0123456789abcde"));
  CHECK_FALSE(is_sandbox_id("0123456789abcdeg"));
  CHECK_FALSE(is_sandbox_id("0123456789abcd.>"));
  CHECK(error_of([] { check_sandbox_id("x"); }).field() == "sandbox_id");
}

TEST_CASE("add_endpoint appends to an entry, or creates the entry with its binaries") {
  auto out =
      apply_operations(kBase, ops({add_endpoint("github", "{host: uploads.github.com, port: 443}", {"/usr/bin/curl"}),
                                   add_endpoint("pypi", "host: pypi.org\nports: [443, 8443]", {"/usr/bin/pip"})}));
  auto p = parse(out);
  auto* gh = find(p, "github");
  REQUIRE(gh);
  REQUIRE(gh->endpoints.size() == 3);
  CHECK(gh->endpoints[2].host == "uploads.github.com");
  CHECK(gh->endpoints[2].ports == std::vector<uint16_t>{443});
  REQUIRE(gh->binaries.size() == 2);
  CHECK(gh->binaries[0].path == "/usr/bin/git");
  CHECK(gh->binaries[1].path == "/usr/bin/curl");
  // The untouched L7 endpoint keeps its rule, glob and all.
  REQUIRE(gh->endpoints[1].rules.size() == 1);
  CHECK(gh->endpoints[1].rules[0].path == "/**/info/refs*");
  auto* pypi = find(p, "pypi");
  REQUIRE(pypi);
  REQUIRE(pypi->endpoints.size() == 1);
  CHECK(pypi->endpoints[0].ports == std::vector<uint16_t>{443, 8443});
  REQUIRE(pypi->binaries.size() == 1);
  CHECK(pypi->binaries[0].path == "/usr/bin/pip");
  CHECK(policy::changed_static_sections(parse(kBase), p).empty());
  // A binary already listed is not listed twice.
  auto again =
      parse(apply_operations(out, ops({add_endpoint("github", "{host: x.github.com, port: 443}", {"/usr/bin/git"})})));
  CHECK(find(again, "github")->binaries.size() == 2);
}

TEST_CASE("add_endpoint refuses a duplicate, a new entry without binaries, and bad YAML with its position") {
  auto dup = error_of(
      [] { apply_operations(kBase, ops({add_endpoint("github", "{host: API.github.com, ports: [8443, 443]}")})); });
  CHECK(dup.code() == Code::kAlreadyExists);
  CHECK(dup.field() == "operations[0].add_endpoint.endpoint_yaml");
  CHECK(contains(dup.what(), "api.github.com:443"));

  auto no_bins = error_of([] { apply_operations(kBase, ops({add_endpoint("pypi", "{host: pypi.org, port: 443}")})); });
  CHECK(no_bins.code() == Code::kInvalidArgument);
  CHECK(no_bins.field() == "operations[0].add_endpoint.binaries");

  // The second operation is at fault: its index is in the field.
  auto bad = error_of([] {
    apply_operations(kBase, ops({add_endpoint("github", "{host: a.github.com, port: 443}"),
                                 add_endpoint("github", "host: b.github.com\nport: [443")}));
  });
  CHECK(bad.code() == Code::kInvalidArgument);
  CHECK(bad.field() == "operations[1].add_endpoint.endpoint_yaml");
  CHECK(contains(bad.what(), "operations[1].add_endpoint.endpoint_yaml:2:"));
  CHECK(contains(bad.what(), "invalid YAML"));

  auto not_map = error_of([] { apply_operations(kBase, ops({add_endpoint("github", "- host: a.com")})); });
  CHECK(not_map.code() == Code::kInvalidArgument);
  CHECK(contains(not_map.what(), "must be a YAML map"));

  auto empty = error_of([] { apply_operations(kBase, ops({v1::PolicyOperation()})); });
  CHECK(empty.field() == "operations[0]");
  CHECK(error_of([] { apply_operations(kBase, Ops()); }).field() == "operations");
}

TEST_CASE("remove_endpoint removes by host and port, or every port of a host") {
  const std::string two_ports =
      apply_operations(kBase, ops({add_endpoint("github", "{host: api.github.com, port: 8443}")}));
  auto one = parse(apply_operations(two_ports, ops({remove_endpoint("github", "api.github.com", 8443)})));
  REQUIRE(find(one, "github")->endpoints.size() == 2);
  CHECK(find(one, "github")->endpoints[0].ports == std::vector<uint16_t>{443});

  auto all = parse(apply_operations(two_ports, ops({remove_endpoint("github", "API.GITHUB.COM", 0)})));
  REQUIRE(find(all, "github")->endpoints.size() == 1);
  CHECK(find(all, "github")->endpoints[0].host == "github.com");

  auto missing = error_of([] { apply_operations(kBase, ops({remove_endpoint("github", "api.github.com", 80)})); });
  CHECK(missing.code() == Code::kNotFound);
  CHECK(missing.field() == "operations[0].remove_endpoint.host");
  auto no_entry = error_of([] { apply_operations(kBase, ops({remove_endpoint("gitlab", "gitlab.com", 0)})); });
  CHECK(no_entry.code() == Code::kNotFound);
  CHECK(no_entry.field() == "operations[0].remove_endpoint.network_policy");
  auto last = error_of([] {
    apply_operations(kBase,
                     ops({remove_endpoint("github", "api.github.com", 0), remove_endpoint("github", "github.com", 0)}));
  });
  CHECK(last.code() == Code::kFailedPrecondition);
  CHECK(contains(last.what(), "remove_network_policy"));
}

TEST_CASE("add_rule and remove_rule, allow and deny") {
  auto out =
      apply_operations(kBase, ops({add_rule("github", "github.com", 443, "{method: POST, path: /**/git-upload-pack}"),
                                   add_rule("github", "github.com", 0, "{method: POST, path: /admin/**}", true)}));
  auto p = parse(out);
  const auto& ep = find(p, "github")->endpoints[1];
  REQUIRE(ep.rules.size() == 2);
  CHECK(ep.rules[1].method == "POST");
  CHECK(ep.rules[1].path == "/**/git-upload-pack");
  REQUIRE(ep.deny_rules.size() == 1);
  CHECK(ep.deny_rules[0].path == "/admin/**");

  // Equal means same fields and values, in any order; the emptied deny_rules goes away.
  auto back = parse(apply_operations(
      out, ops({remove_rule("github", "github.com", 443, "{path: /admin/**, method: POST}", true),
                remove_rule("github", "github.com", 443, "{method: GET, path: \"/**/info/refs*\"}")})));
  const auto& ep2 = find(back, "github")->endpoints[1];
  REQUIRE(ep2.rules.size() == 1);
  CHECK(ep2.rules[0].path == "/**/git-upload-pack");
  CHECK(ep2.deny_rules.empty());

  auto dup = error_of([&] {
    apply_operations(out, ops({add_rule("github", "github.com", 443, "{path: /**/git-upload-pack, method: POST}")}));
  });
  CHECK(dup.code() == Code::kAlreadyExists);
  auto no_rule = error_of(
      [] { apply_operations(kBase, ops({remove_rule("github", "github.com", 443, "{method: PUT, path: /x}")})); });
  CHECK(no_rule.code() == Code::kNotFound);
  CHECK(no_rule.field() == "operations[0].remove_rule.rule_yaml");
  auto no_host = error_of(
      [] { apply_operations(kBase, ops({add_rule("github", "gitlab.com", 443, "{method: GET, path: /x}")})); });
  CHECK(no_host.code() == Code::kNotFound);
  CHECK(no_host.field() == "operations[0].add_rule.host");
  // Two endpoints for one host: the port must say which.
  auto two = apply_operations(
      kBase, ops({add_endpoint("github", "{host: github.com, port: 8443, protocol: rest, access: full}")}));
  auto ambiguous =
      error_of([&] { apply_operations(two, ops({add_rule("github", "github.com", 0, "{method: GET, path: /y}")})); });
  CHECK(ambiguous.code() == Code::kInvalidArgument);
  CHECK(ambiguous.field() == "operations[0].add_rule.port");
}

TEST_CASE("remove_network_policy; a failing operation names its index") {
  auto p = parse(apply_operations(kBase, ops({remove_network_policy("github")})));
  CHECK(p.network_policies.empty());
  auto e = error_of([] {
    apply_operations(kBase, ops({remove_network_policy("github"), remove_network_policy("github")}));
  });
  CHECK(e.code() == Code::kNotFound);
  CHECK(e.field() == "operations[1].remove_network_policy.network_policy");
}

TEST_CASE("an update keeps quoting, so a quoted value keeps its type") {
  const std::string base = R"(version: 1
process:
  run_as_user: "1000"
network_policies:
  n:
    name: "null"
    endpoints:
      - { host: example.com, port: 443, protocol: rest, rules: [{allow: {method: "*", path: "/**"}}] }
    binaries:
      - { path: "/usr/bin/*" }
)";
  auto out = apply_operations(base, ops({add_endpoint("n", "{host: example.org, port: 443}")}));
  auto p = parse(out);
  CHECK(p.process.run_as_user == "1000");
  const auto* n = find(p, "n");
  REQUIRE(n);
  CHECK(n->name == "null");  // plain `null` would have made it unset, and the name the key
  CHECK(n->endpoints[0].rules[0].method == "*");
  CHECK(n->binaries[0].path == "/usr/bin/*");
  CHECK(contains(out, "\"1000\""));
  CHECK(policy::changed_static_sections(parse(base), p).empty());
}

TEST_CASE("static sections may not change on a live sandbox; their path order may") {
  auto live = parse(kBase);
  auto with = [&](const std::string& from, const std::string& to) {
    std::string y = kBase;
    y.replace(y.find(from), from.size(), to);
    return parse(y);
  };
  CHECK(policy::changed_static_sections(live, with("[/usr, /lib]", "[/usr, /lib, /opt]")) ==
        std::vector<std::string>{"filesystem_policy"});
  CHECK(policy::changed_static_sections(live, with("include_workdir: true", "include_workdir: false")) ==
        std::vector<std::string>{"filesystem_policy"});
  CHECK(policy::changed_static_sections(live, with("best_effort", "hard_requirement")) ==
        std::vector<std::string>{"landlock"});
  CHECK(policy::changed_static_sections(live, with("run_as_user: sandbox", "run_as_user: \"1000\"")) ==
        std::vector<std::string>{"process"});
  CHECK(policy::changed_static_sections(live, with("[/usr, /lib]", "[/lib, /usr]")).empty());
  CHECK(policy::changed_static_sections(live, with("landlock:\n  compatibility: best_effort\n", "")).empty());
  CHECK(policy::changed_static_sections(live, with("port: 443 }", "port: 8443 }")).empty());

  auto e = error_of([&] { check_static_sections(live, with("best_effort", "hard_requirement")); });
  CHECK(e.code() == Code::kFailedPrecondition);
  CHECK(e.field() == "landlock");
  CHECK(contains(e.what(), "landlock differs from the sandbox's version 1"));
  std::string two = kBase;
  two.replace(two.find("[/usr, /lib]"), 12, "[/usr]");
  two.replace(two.find("run_as_group: sandbox"), 21, "run_as_group: \"1000\"");
  auto both = error_of([&] { check_static_sections(live, parse(two)); });
  CHECK(both.field() == "filesystem_policy");
  CHECK(contains(both.what(), "filesystem_policy and process differ"));
}

TEST_CASE("parse_or_throw lists every problem with file:line:column, on one line") {
  const std::string bad =
      "version: 1\nnetwork_policies:\n  p:\n    endpoints:\n      - {host: a.com, port: 0}\n"
      "    binaries:\n      - {path: usr/bin/x}\n";
  auto e = error_of([&] { parse_or_throw(bad, "p.yaml", "yaml"); });
  CHECK(e.code() == Code::kInvalidArgument);
  CHECK(e.field() == "yaml");
  CHECK(contains(e.what(), "p.yaml:5:29: network_policies.p.endpoints[0].port: must be an integer"));
  CHECK(contains(e.what(), "; p.yaml:7:16: network_policies.p.binaries[0].path: must be an absolute path"));
  CHECK_FALSE(contains(e.what(), "\n"));
  auto big = error_of([] { parse_or_throw(std::string(kMaxYamlBytes + 1, '#'), "p.yaml", "yaml"); });
  CHECK(big.code() == Code::kPayloadTooLarge);
}

// ---------------------------------------------------------------- against nats-server -js

namespace {

// One nats-server, `instances` policy-service replicas (each with its own connection, one queue
// group), and a client connection.
struct Cluster {
  explicit Cluster(int instances = 1, ApiOptions o = {}) {
    for (int i = 0; i < instances; ++i) {
      buses.push_back(Bus::connect({nats.url(), "policy-service-" + std::to_string(i)}));
      apis.push_back(std::make_unique<PolicyApi>(*buses.back(), o));
    }
    client = Bus::connect({nats.url(), "client"});
  }
  ~Cluster() {
    for (auto& a : apis) a->stop();
    client->drain();
    for (auto& b : buses) b->drain();
    apis.clear();
  }

  template <class Rep>
  Rep call(const std::string& op, const google::protobuf::Message& req, std::chrono::milliseconds timeout = 5s) {
    return client->request<Rep>(subjects::policy_op(op), req, timeout);
  }
  v1::PolicyWriteReply set(const std::string& yaml, uint32_t wait_ms = 0, const std::string& author = "",
                           const std::string& reason = "") {
    v1::PolicySetRequest r;
    r.set_sandbox_id(kSid);
    r.set_yaml(yaml);
    r.set_wait_ms(wait_ms);
    r.set_author(author);
    r.set_reason(reason);
    return call<v1::PolicyWriteReply>("set", r, std::chrono::milliseconds(wait_ms) + 5s);
  }
  v1::PolicyWriteReply update(std::initializer_list<v1::PolicyOperation> list, uint32_t wait_ms = 0,
                              const std::string& author = "") {
    v1::PolicyUpdateRequest r;
    r.set_sandbox_id(kSid);
    *r.mutable_operations() = ops(list);
    r.set_wait_ms(wait_ms);
    r.set_author(author);
    return call<v1::PolicyWriteReply>("update", r, std::chrono::milliseconds(wait_ms) + 5s);
  }
  v1::PolicyRecord get(uint64_t version = 0) {
    v1::PolicyGetRequest r;
    r.set_sandbox_id(kSid);
    r.set_version(version);
    return call<v1::PolicyRecord>("get", r);
  }
  v1::PolicyListReply list(uint32_t limit = 0) {
    v1::PolicyListRequest r;
    r.set_sandbox_id(kSid);
    r.set_limit(limit);
    return call<v1::PolicyListReply>("list", r);
  }

  testing::NatsServer nats;
  std::vector<std::unique_ptr<Bus>> buses;
  std::vector<std::unique_ptr<PolicyApi>> apis;
  std::unique_ptr<Bus> client;
};

// A fake supervisor: watches the sandbox's policy key and acks every version it sees (after
// delay), or, when fail_from is set, reports that it cannot apply versions from that one on.
class FakeSupervisor {
 public:
  FakeSupervisor(const std::string& url, uint64_t fail_from = 0, std::chrono::milliseconds delay = 0ms)
      : bus_(Bus::connect({url, "fake-supervisor"})) {
    auto kv = bus_->key_value({subjects::kPolicyBucket});
    watcher_ = std::make_unique<KvWatcher>(kv.watch(kSid));
    thread_ = std::thread([this, fail_from, delay] {
      uint64_t enforced = 0;
      while (running_) {
        auto e = watcher_->next(50ms);
        if (!e || e->deleted) continue;
        v1::PolicyRecord r;
        if (!r.ParseFromString(e->value)) continue;  // the test's checks see no ack then
        v1::PolicyAck ack;
        ack.set_sandbox_id(kSid);
        if (fail_from && r.version() >= fail_from) {
          ack.set_failed_version(r.version());
          ack.set_error("cannot resolve pypi.org");
        } else {
          enforced = r.version();
        }
        ack.set_version(enforced);
        std::this_thread::sleep_for(delay);
        bus_->publish(subjects::policy_ack(kSid), ack);
      }
    });
  }
  ~FakeSupervisor() {
    running_ = false;
    thread_.join();
  }

 private:
  std::unique_ptr<Bus> bus_;
  std::unique_ptr<KvWatcher> watcher_;
  std::atomic<bool> running_{true};
  std::thread thread_;
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TEST_CASE("set, get, update, list and get --version over NATS") {
  Cluster c;
  auto r1 = c.set(kBase, 0, "alice", "created with the sandbox");
  CHECK(r1.version() == 1);
  CHECK(r1.changed());
  CHECK(r1.sha256() == sha256_hex(kBase));
  CHECK(r1.sha256().size() == 64);

  auto g1 = c.get();
  CHECK(g1.yaml() == kBase);  // set stores the text as given, comments and all
  CHECK(g1.version() == 1);
  CHECK(g1.author() == "alice");
  CHECK(g1.sandbox_id() == kSid);

  auto same = c.set(kBase);  // the same text again stores nothing
  CHECK_FALSE(same.changed());
  CHECK(same.version() == 1);

  auto r2 = c.update({add_endpoint("pypi", "{host: pypi.org, port: 443}", {"/usr/bin/pip"})}, 0, "bob");
  CHECK(r2.version() == 2);
  CHECK(r2.changed());
  auto g2 = c.get();
  CHECK(g2.version() == 2);
  CHECK(g2.author() == "bob");
  CHECK(find(parse(g2.yaml()), "pypi"));

  const std::string api_line = "      - { host: api.github.com, port: 443 }\n";
  std::string smaller = kBase;
  smaller.erase(smaller.find(api_line), api_line.size());
  auto r3 = c.set(smaller, 0, "carol", "no API");
  CHECK(r3.version() == 3);

  auto l = c.list();
  CHECK(l.latest_version() == 3);
  REQUIRE(l.versions_size() == 3);
  for (int i = 0; i < 3; ++i) CHECK(l.versions(i).version() == static_cast<uint64_t>(i + 1));
  CHECK(l.versions(0).author() == "alice");
  CHECK(l.versions(0).reason() == "created with the sandbox");
  CHECK(l.versions(0).size_bytes() == kBase.size());
  CHECK(l.versions(1).sha256() == sha256_hex(g2.yaml()));
  CHECK(l.versions(2).reason() == "no API");
  CHECK(l.versions(0).created_at_ms() <= l.versions(2).created_at_ms());
  CHECK(l.versions(2).created_at_ms() > 1700000000000);
  auto last2 = c.list(2);
  REQUIRE(last2.versions_size() == 2);
  CHECK(last2.versions(0).version() == 2);

  CHECK(c.get(1).yaml() == kBase);
  CHECK(c.get(2).yaml() == g2.yaml());
  CHECK(c.get(3).yaml() == smaller);
  auto none = error_of([&] { c.get(4); });
  CHECK(none.code() == Code::kNotFound);
  CHECK(none.field() == "version");
  CHECK(contains(none.what(), "versions 1 to 3"));

  // What a supervisor reads: a PolicyRecord under key <sandbox_id> of bucket `policies`, and every
  // version under <sandbox_id>.<version> of `policy_versions`.
  auto kv = c.client->key_value({subjects::kPolicyBucket});
  auto e = kv.get(kSid);
  REQUIRE(e);
  v1::PolicyRecord stored;
  REQUIRE(stored.ParseFromString(e->value));
  CHECK(stored.version() == 3);
  CHECK(stored.yaml() == smaller);
  auto versions = c.client->key_value({subjects::kPolicyVersionsBucket});
  CHECK(versions.values(kSid + ".*").size() == 3);
}

TEST_CASE("bad requests are refused with the field at fault") {
  Cluster c;
  auto call_error = [&](const std::string& op, const google::protobuf::Message& req) {
    return error_of([&] { c.call<v1::PolicyWriteReply>(op, req); });
  };
  v1::PolicySetRequest set;
  set.set_sandbox_id("ABC");
  set.set_yaml(kBase);
  auto e = call_error("set", set);
  CHECK(e.code() == Code::kInvalidArgument);
  CHECK(e.field() == "sandbox_id");

  set.set_sandbox_id(kSid);
  set.set_filename("my.yaml");
  set.set_yaml(
      "version: 1\nnetwork_policies:\n  p: {endpoints: [{host: a.com, port: 99999}], binaries: [{path: /x}]}\n");
  e = call_error("set", set);
  CHECK(e.code() == Code::kInvalidArgument);
  CHECK(e.field() == "yaml");
  CHECK(contains(e.what(), "my.yaml:3:39: network_policies.p.endpoints[0].port"));
  set.set_yaml("version: 1\nfilesystem_policy: [\n");
  CHECK(contains(call_error("set", set).what(), "my.yaml:3:1: invalid YAML"));

  set.set_yaml(kBase);
  set.set_wait_ms(3600 * 1000);
  CHECK(call_error("set", set).field() == "wait_ms");

  v1::PolicyUpdateRequest update;
  update.set_sandbox_id(kSid);
  *update.add_operations() = add_endpoint("pypi", "{host: pypi.org, port: 443}", {"/usr/bin/pip"});
  e = call_error("update", update);
  CHECK(e.code() == Code::kNotFound);
  CHECK(e.field() == "sandbox_id");
  CHECK(contains(e.what(), "set one first"));

  e = error_of([&] { c.get(); });
  CHECK(e.code() == Code::kNotFound);
  CHECK(error_of([&] { c.list(); }).code() == Code::kNotFound);

  e = call_error("frobnicate", v1::PolicyGetRequest());
  CHECK(e.code() == Code::kInvalidArgument);
  CHECK(e.field() == "op");
  CHECK(contains(e.what(), "use set, update, get, list or validate"));
  e = error_of([&] { c.client->request(subjects::policy_op("set"), std::string("\xff\xff\xff", 3), 5s); });
  CHECK(e.code() == Code::kInvalidArgument);
  CHECK(contains(e.what(), "PolicySetRequest"));

  // Once version 1 exists, the static sections stay; the stored version is untouched.
  REQUIRE(c.set(kBase).version() == 1);
  std::string tighter = kBase;
  tighter.replace(tighter.find("best_effort"), 11, "hard_requirement");
  e = error_of([&] { c.set(tighter); });
  CHECK(e.code() == Code::kFailedPrecondition);
  CHECK(e.field() == "landlock");
  CHECK(c.get().version() == 1);

  // An update whose result does not validate: the problem's path says where.
  e = error_of([&] { c.update({add_endpoint("github", "{host: x.github.com, port: 0}")}); });
  CHECK(e.code() == Code::kInvalidArgument);
  CHECK(e.field() == "operations");
  CHECK(contains(e.what(), "network_policies.github.endpoints[2].port: must be an integer"));
  CHECK(c.get().version() == 1);

  // validate answers with the problems, positions and all, and stores nothing.
  v1::PolicyValidateRequest v;
  v.set_yaml("version: 2\n");
  v.set_filename("v.yaml");
  auto vr = c.call<v1::PolicyValidateReply>("validate", v);
  CHECK_FALSE(vr.valid());
  REQUIRE(vr.problems_size() == 1);
  CHECK(vr.problems(0).file() == "v.yaml");
  CHECK(vr.problems(0).line() == 1);
  CHECK(vr.problems(0).column() == 10);
  CHECK(vr.problems(0).path() == "version");
  v.set_yaml(tighter);
  CHECK(c.call<v1::PolicyValidateReply>("validate", v).valid());  // valid on its own ...
  v.set_sandbox_id(kSid);
  vr = c.call<v1::PolicyValidateReply>("validate", v);  // ... not for this live sandbox
  CHECK_FALSE(vr.valid());
  REQUIRE(vr.problems_size() == 1);
  CHECK(vr.problems(0).path() == "landlock");
  CHECK(vr.problems(0).line() == 7);
  CHECK(vr.problems(0).column() == 1);
}

TEST_CASE("a write that loses the race starts over from the winner's version") {
  testing::NatsServer nats;
  auto bus_a = Bus::connect({nats.url(), "a"});
  auto bus_b = Bus::connect({nats.url(), "b"});
  PolicyStore a(*bus_a), b(*bus_b);
  a.write(
      kSid, [](const v1::PolicyRecord*) { return kBase; }, "t", "");
  int calls = 0;
  auto r = a.write(
      kSid,
      [&](const v1::PolicyRecord* latest) {
        // The first time, another replica commits between this read and this commit.
        if (++calls == 1)
          b.write(
              kSid,
              [](const v1::PolicyRecord* l) {
                return apply_operations(l->yaml(),
                                        ops({add_endpoint("from_b", "{host: b.example.com, port: 443}", {"/b"})}));
              },
              "b", "");
        return apply_operations(latest->yaml(),
                                ops({add_endpoint("from_a", "{host: a.example.com, port: 443}", {"/a"})}));
      },
      "a", "");
  CHECK(calls == 2);
  CHECK(a.conflicts() == 1);
  CHECK(r.record.version() == 3);
  auto p = parse(r.record.yaml());
  CHECK(find(p, "from_a"));
  CHECK(find(p, "from_b"));  // not lost
  auto h = b.history(kSid);
  REQUIRE(h.size() == 3);
  CHECK(h[1].author() == "b");
  CHECK(h[2].author() == "a");
}

TEST_CASE("a version whose writer died before archiving it is archived by the next writer or reader") {
  testing::NatsServer nats;
  auto bus = Bus::connect({nats.url(), "t"});
  PolicyStore st(*bus);
  auto latest = bus->key_value({subjects::kPolicyBucket});
  auto versions = bus->key_value({subjects::kPolicyVersionsBucket});
  // What a replica leaves behind when it dies between its commit and its archive write.
  auto commit_only = [&](uint64_t version, const std::string& yaml) {
    auto cur = latest.get(kSid);
    REQUIRE(cur);
    v1::PolicyRecord r;
    r.set_sandbox_id(kSid);
    r.set_version(version);
    r.set_yaml(yaml);
    r.set_sha256(sha256_hex(yaml));
    REQUIRE(latest.update(kSid, r.SerializeAsString(), cur->revision));
    CHECK_FALSE(versions.get(subjects::policy_version_key(kSid, version)));
  };
  st.write(
      kSid, [](const v1::PolicyRecord*) { return kBase; }, "", "");
  CHECK(versions.get(subjects::policy_version_key(kSid, 1)));
  commit_only(2, kBase + "# two\n");
  auto r3 = st.write(
      kSid, [](const v1::PolicyRecord*) { return kBase + "# three\n"; }, "", "");
  CHECK(r3.record.version() == 3);
  CHECK(versions.get(subjects::policy_version_key(kSid, 2)));  // by the writer of 3, before its commit

  commit_only(4, kBase + "# four\n");
  auto h = st.history(kSid);  // the reader finds 4 in `policies` and archives it
  REQUIRE(h.size() == 4);
  for (size_t i = 0; i < h.size(); ++i) CHECK(h[i].version() == i + 1);
  CHECK(h[3].yaml() == kBase + "# four\n");
  CHECK(versions.get(subjects::policy_version_key(kSid, 4)));
  CHECK(st.get(kSid, 2).yaml() == kBase + "# two\n");
}

TEST_CASE("two service replicas in one queue group lose no concurrent update") {
  Cluster c(2);
  REQUIRE(c.set(kBase).version() == 1);
  constexpr int kThreads = 8, kEach = 5;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        try {
          c.update({add_endpoint("t" + std::to_string(t),
                                 "{host: h" + std::to_string(i) + ".t" + std::to_string(t) + ".example.com, port: 443}",
                                 {"/usr/bin/curl"})});
        } catch (const std::exception& e) {
          MESSAGE("update failed: " << std::string(e.what()));
          ++failures;
        }
      }
    });
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  auto latest = c.get();
  CHECK(latest.version() == 1 + kThreads * kEach);
  auto p = parse(latest.yaml());
  size_t endpoints = 0;
  for (int t = 0; t < kThreads; ++t)
    if (auto* np = find(p, "t" + std::to_string(t))) endpoints += np->endpoints.size();
  CHECK(endpoints == kThreads * kEach);
  auto l = c.list();
  REQUIRE(l.versions_size() == 1 + kThreads * kEach);
  for (int i = 0; i < l.versions_size(); ++i) CHECK(l.versions(i).version() == static_cast<uint64_t>(i + 1));
  MESSAGE("commits lost to the other writers and retried: " << c.apis[0]->store().conflicts() +
                                                                   c.apis[1]->store().conflicts());
}

TEST_CASE("--wait returns once the sandbox acknowledged, or after the wait with the version stored") {
  Cluster c;
  REQUIRE(c.set(kBase).version() == 1);
  {
    // The ack comes well after the write is stored and its wait armed.
    FakeSupervisor sup(c.nats.url(), 0, 300ms);
    auto start = std::chrono::steady_clock::now();
    auto r = c.update({add_endpoint("pypi", "{host: pypi.org, port: 443}", {"/usr/bin/pip"})}, 10000);
    CHECK(seconds_since(start) >= 0.29);
    CHECK(seconds_since(start) < 5);
    CHECK(r.version() == 2);
    CHECK(r.acknowledged());
    CHECK(r.acked_version() == 2);
    CHECK(r.ack_error().empty());
  }
  // Nobody acks now: the reply comes when the wait is over, and the version is enforced all the
  // same once the supervisor catches up.
  auto start = std::chrono::steady_clock::now();
  auto r = c.update({remove_network_policy("pypi")}, 400);
  double took = seconds_since(start);
  CHECK(took >= 0.39);
  CHECK(took < 3);
  CHECK(r.version() == 3);
  CHECK_FALSE(r.acknowledged());
  CHECK(r.acked_version() == 2);
  CHECK(c.get().version() == 3);
  {
    // The supervisor sees version 3 and acks it; it cannot apply 4: the wait ends with its reason.
    FakeSupervisor sup(c.nats.url(), 4);
    REQUIRE(testing::wait_until([&] { return c.set(c.get().yaml(), 1).acknowledged(); }, 5s));
    start = std::chrono::steady_clock::now();
    auto failed = c.update({add_endpoint("pypi", "{host: pypi.org, port: 443}", {"/usr/bin/pip"})}, 10000);
    CHECK(seconds_since(start) < 5);
    CHECK(failed.version() == 4);
    CHECK_FALSE(failed.acknowledged());
    CHECK(failed.acked_version() == 3);
    CHECK(failed.ack_error() == "cannot resolve pypi.org");
  }
}

TEST_CASE("a write waiting for its ack holds no worker: other requests are answered meanwhile") {
  ApiOptions o;
  o.workers = 1;
  Cluster c(1, o);
  REQUIRE(c.set(kBase).version() == 1);
  std::atomic<bool> waited_done{false};
  v1::PolicyWriteReply waited;
  std::string failed;
  std::thread writer([&] {
    try {
      waited = c.update({add_endpoint("pypi", "{host: pypi.org, port: 443}", {"/usr/bin/pip"})}, 2000);
    } catch (const std::exception& e) {
      failed = e.what();
    }
    waited_done = true;
  });
  REQUIRE(testing::wait_until([&] { return c.get().version() == 2; }, 5s));  // stored, now waiting
  auto start = std::chrono::steady_clock::now();
  CHECK(c.get(1).version() == 1);
  CHECK(c.list().versions_size() == 2);
  CHECK(seconds_since(start) < 1);
  CHECK_FALSE(waited_done);
  writer.join();
  CHECK(failed == "");
  CHECK_FALSE(waited.acknowledged());
  CHECK(waited.version() == 2);
}

TEST_CASE("a supervisor's watch catches up on the latest version after NATS restarts") {
  Cluster c;
  REQUIRE(c.set(kBase).version() == 1);
  auto sup = Bus::connect({c.nats.url(), "supervisor"});
  auto kv = sup->key_value({subjects::kPolicyBucket});
  auto w = kv.watch(kSid);
  auto first = w.next(5s);
  REQUIRE(first);
  v1::PolicyRecord r;
  REQUIRE(r.ParseFromString(first->value));
  CHECK(r.version() == 1);

  c.nats.restart();  // same port, same JetStream store
  std::string v2 =
      kBase + "  pypi:\n    endpoints: [{host: pypi.org, port: 443}]\n    binaries: [{path: /usr/bin/pip}]\n";
  // Retried until the service is reconnected; a repeated set of the same text stores nothing.
  REQUIRE(testing::wait_until(
      [&] {
        try {
          return c.set(v2).version() == 2;
        } catch (const Error&) {
          return false;
        }
      },
      20s));

  // The watch that was open across the restart delivers version 2 ...
  uint64_t seen = 0;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (seen < 2 && std::chrono::steady_clock::now() < deadline)
    if (auto e = w.next(500ms); e && r.ParseFromString(e->value)) seen = r.version();
  CHECK(seen == 2);
  // ... and a supervisor that connects afresh reads it first.
  auto fresh = kv.watch(kSid);
  auto e = fresh.next(5s);
  REQUIRE(e);
  REQUIRE(r.ParseFromString(e->value));
  CHECK(r.version() == 2);
  CHECK(r.yaml() == v2);
}

TEST_CASE("rule and endpoint operations without a network_policy key find the one entry holding host:port") {
  auto out = apply_operations(kBase, ops({add_rule("", "github.com", 443, "{method: GET, path: /x}", true)}));
  CHECK(out.find("deny_rules") != std::string::npos);
  auto none = error_of([] { apply_operations(kBase, ops({add_rule("", "nowhere.example", 443, "{method: GET, path: /}", false)})); });
  CHECK(none.code() == Code::kNotFound);
  CHECK(std::string(none.what()).find("no network_policies entry has an endpoint for nowhere.example:443") != std::string::npos);
  // Two entries with the same host: the key must be given.
  auto two = apply_operations(kBase, ops({add_endpoint("mirror", "{host: api.github.com, port: 443}", {"/usr/bin/curl"})}));
  auto ambiguous = error_of([&] { apply_operations(two, ops({remove_endpoint("", "api.github.com", 443)})); });
  CHECK(ambiguous.field() == "operations[0].remove_endpoint.network_policy");
}
