#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <initializer_list>

#include "shared/policy.h"

using namespace bulwark;
using namespace bulwark::policy;
namespace fs = std::filesystem;

namespace {

const fs::path kPolicies = fs::path(BULWARK_REFERENCE_DIR) / "openshell-policies";

std::vector<Problem> problems_of(const std::string& yaml) {
  try {
    parse_policy(yaml, "p.yaml");
  } catch (const PolicyInvalid& e) {
    return e.problems;
  }
  FAIL("expected the policy to be refused:\n" << yaml);
  return {};
}

// The one problem a policy has, as printed.
std::string problem(const std::string& yaml) {
  auto ps = problems_of(yaml);
  std::string all;
  for (const auto& p : ps) all += p.to_string() + "\n";
  CHECK_MESSAGE(ps.size() == 1, "expected exactly one problem, got:\n" << all);
  return ps.empty() ? "" : ps.front().to_string();
}

// A policy with one network policy `p` and one endpoint made of `lines`: the first line is line 6,
// column 9 (after "      - "), each next line one further down at column 9.
std::string ep(std::initializer_list<std::string> lines) {
  std::string y =
      "version: 1\n"
      "network_policies:\n"
      "  p:\n"
      "    binaries: [{path: /usr/bin/curl}]\n"
      "    endpoints:\n";
  bool first = true;
  for (const auto& l : lines) {
    y += (first ? "      - " : "        ") + l + "\n";
    first = false;
  }
  return y;
}

}  // namespace

// ---- OpenShell's own policies load unchanged ----

TEST_CASE("every OpenShell reference policy loads") {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(kPolicies)) {
    if (entry.path().extension() != ".yaml") continue;
    CAPTURE(entry.path());
    try {
      load_policy_file(entry.path());
    } catch (const Error& e) {
      FAIL(e.what());
    }
    ++n;
  }
  CHECK(n == 4);
}

TEST_CASE("full-fixture: filesystem, process and four network policies in file order") {
  Policy p = load_policy_file(kPolicies / "full-fixture.yaml");
  CHECK(p.version == 1);
  CHECK(p.has_filesystem);
  CHECK(p.filesystem.include_workdir);
  CHECK(p.filesystem.read_only ==
        std::vector<std::string>{"/usr", "/lib", "/proc", "/dev/urandom", "/app", "/etc", "/var/log"});
  CHECK(p.filesystem.read_write == std::vector<std::string>{"/sandbox", "/tmp", "/dev/null"});
  CHECK(p.landlock == LandlockCompatibility::kBestEffort);
  CHECK(p.process.run_as_user == "sandbox");
  CHECK(p.process.run_as_group == "sandbox");
  REQUIRE(p.network_policies.size() == 4);
  CHECK(p.network_policies[0].key == "claude_code");
  CHECK(p.network_policies[1].name == "github-ssh-over-https");
  CHECK(p.network_policies[2].key == "copilot");
  CHECK(p.network_policies[3].key == "gitlab");

  const auto& claude = p.network_policies[0];
  REQUIRE(claude.endpoints.size() == 2);
  CHECK(claude.endpoints[1].host == "statsig.anthropic.com");
  CHECK(claude.endpoints[1].ports == std::vector<uint16_t>{443});
  CHECK(claude.endpoints[1].protocol.empty());
  CHECK(claude.binaries[0].path == "/usr/local/bin/claude");

  const auto& git = p.network_policies[1].endpoints.at(0);
  CHECK(git.protocol == "rest");
  CHECK(git.enforcement == "enforce");
  REQUIRE(git.rules.size() == 2);
  CHECK(git.rules[0].method == "GET");
  CHECK(git.rules[0].path == "/**/info/refs*");
  CHECK(git.rules[1].method == "POST");

  CHECK(p.network_policies[2].endpoints.size() == 11);
  CHECK(p.network_policies[2].binaries[0].path == "/usr/lib/node_modules/@github/copilot/node_modules/@github/**/copilot");
}

TEST_CASE("quickstart: read-only access to api.github.com:443, identity left to the driver") {
  Policy p = load_policy_file(kPolicies / "quickstart.yaml");
  CHECK_FALSE(p.process.run_as_user.has_value());
  CHECK_FALSE(p.process.run_as_group.has_value());
  CHECK(p.filesystem.read_write == std::vector<std::string>{"/sandbox", "/tmp", "/dev/null"});
  REQUIRE(p.network_policies.size() == 1);
  const auto& np = p.network_policies[0];
  CHECK(np.key == "github_api");
  CHECK(np.name == "github-api-readonly");
  REQUIRE(np.endpoints.size() == 1);
  CHECK(np.endpoints[0].host == "api.github.com");
  CHECK(np.endpoints[0].ports == std::vector<uint16_t>{443});
  CHECK(np.endpoints[0].access == "read-only");
  CHECK(np.endpoints[0].rules.empty());
  CHECK(np.binaries[0].path == "/usr/bin/curl");
}

TEST_CASE("local-inference and transparent-tcp: deprecated tls, full access, native TCP with allowed_ips") {
  Policy li = load_policy_file(kPolicies / "local-inference.yaml");
  REQUIRE(li.network_policies.size() == 2);
  CHECK(li.network_policies[1].name == "NVIDIA API (L7 intercept)");
  CHECK(li.network_policies[1].endpoints[0].tls == "terminate");
  CHECK(li.network_policies[1].endpoints[0].access == "full");
  CHECK_FALSE(li.process.run_as_user.has_value());

  Policy tcp = load_policy_file(kPolicies / "transparent-tcp.yaml");
  const auto& e = tcp.network_policies.at(0).endpoints.at(0);
  CHECK(e.protocol == "tcp");
  CHECK(e.ports == std::vector<uint16_t>{6379});
  CHECK(e.allowed_ips == std::vector<std::string>{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"});
  CHECK(tcp.network_policies[0].binaries[0].path == "/**");
}

TEST_CASE("the schema's other fields are accepted when well formed") {
  Policy p = parse_policy(R"(version: 1
process:
  run_as_user: "1500"
  run_as_group: 4294967294
landlock:
  compatibility: hard_requirement
network_policies:
  git:
    endpoints:
      - host: github.com
        ports: [443, 8443, 443]
        protocol: REST
        path: /repos/**
        allow_encoded_slash: true
        websocket_credential_rewrite: true
        request_body_credential_rewrite: true
        allow_uninspected_credentials: false
        credential_binding: {provider: work-gcp}
        rules:
          - allow:
              method: GET
              path: /**/info/refs*
              query:
                service: "git-*"
                tag: {any: ["v1.*", "v2.*"]}
        deny_rules:
          - method: "*"
            path: /repos/*/rulesets
      - host: "*-aiplatform.googleapis.com"
        port: 443
        protocol: rest
        access: full
        credential_signing: sigv4:body
        signing_service: bedrock
        signing_region: us-east-1
      - host: realtime.example.com
        port: 443
        protocol: websocket
        rules:
          - allow: {method: GET, path: /graphql}
          - allow: {operation_type: subscription, fields: [messageAdded]}
      - host: "**.github.com"
        port: 443
        protocol: graphql
        persisted_queries: allow_registered
        graphql_persisted_queries:
          abc123: {operation_type: query, operation_name: Viewer, fields: [viewer]}
        graphql_max_body_bytes: 131072
        access: read-write
        deny_rules:
          - operation_type: mutation
            operation_name: Admin*
      - host: mcp.example.com
        port: 443
        path: /mcp
        protocol: mcp
        enforcement: audit
        mcp: {max_body_bytes: 131072, strict_tool_names: true}
        rules:
          - allow: {method: initialize}
          - allow: {method: tools/call, tool: search_web}
          - allow:
              method: tools/call
              tool: {any: [create_issue, list_issues]}
          - allow: {method: tools/call, params: {name: "get_*"}}
        deny_rules:
          - method: tools/call
            tool: send_email
      - host: jsonrpc.example.com
        port: 443
        protocol: json-rpc
        json_rpc: {max_body_bytes: 4096}
        rules:
          - allow: {method: "*"}
        deny_rules:
          - method: reports.delete
      - port: 5432
        allowed_ips: ["10.0.5.0/24", "fd00::/8"]
    binaries:
      - path: /usr/bin/git
        harness: true
network_middlewares:
  regex-redactor:
    name: Redact API tokens
    middleware: openshell/regex
    order: 10
    config:
      mode: redact
      patterns: [{name: key, regex: "sk-[a-z]+", max: 3}]
    on_error: fail_open
    endpoints:
      include: ["*.example.com"]
      exclude: ["trusted.example.com"]
  second:
    middleware: acme/audit
    endpoints: {include: [api.example.com]}
)",
                          "all.yaml");
  CHECK(p.process.run_as_user == "1500");
  CHECK(p.process.run_as_group == "4294967294");
  CHECK(p.landlock == LandlockCompatibility::kHardRequirement);
  CHECK_FALSE(p.has_filesystem);
  const auto& eps = p.network_policies.at(0).endpoints;
  REQUIRE(eps.size() == 7);

  CHECK(eps[0].protocol == "rest");  // case-folded, as OpenShell reads it
  CHECK(eps[0].ports == std::vector<uint16_t>{443, 8443});
  CHECK(eps[0].allow_encoded_slash);
  CHECK(eps[0].credential_binding_provider == "work-gcp");
  REQUIRE(eps[0].rules.size() == 1);
  CHECK(eps[0].rules[0].query.at("service") == Globs{"git-*"});
  CHECK(eps[0].rules[0].query.at("tag") == Globs{"v1.*", "v2.*"});
  REQUIRE(eps[0].deny_rules.size() == 1);
  CHECK(eps[0].deny_rules[0].method == "*");

  CHECK(eps[1].credential_signing == "sigv4:body");
  CHECK(eps[1].signing_service == "bedrock");

  REQUIRE(eps[2].rules.size() == 2);
  CHECK(eps[2].rules[1].operation_type == "subscription");
  CHECK(eps[2].rules[1].fields == std::vector<std::string>{"messageAdded"});

  CHECK(eps[3].persisted_queries == "allow_registered");
  CHECK(eps[3].graphql_persisted_queries.at("abc123").operation_name == "Viewer");
  CHECK(eps[3].graphql_max_body_bytes == 131072);

  CHECK(eps[4].json_rpc_max_body_bytes == 131072);
  CHECK(eps[4].mcp.strict_tool_names);
  CHECK(eps[4].enforcement == "audit");
  REQUIRE(eps[4].rules.size() == 4);
  CHECK(eps[4].rules[1].params.at("name") == Globs{"search_web"});
  CHECK(eps[4].rules[2].params.at("name") == Globs{"create_issue", "list_issues"});
  CHECK(eps[4].rules[3].params.at("name") == Globs{"get_*"});
  CHECK(eps[4].deny_rules.at(0).params.at("name") == Globs{"send_email"});

  CHECK(eps[5].json_rpc_max_body_bytes == 4096);
  CHECK(eps[6].host.empty());
  CHECK(eps[6].allowed_ips.size() == 2);

  REQUIRE(p.network_middlewares.size() == 2);
  const auto& m = p.network_middlewares[0];
  CHECK(m.key == "regex-redactor");
  CHECK(m.name == "Redact API tokens");
  CHECK(m.order == 10);
  CHECK(m.on_error == "fail_open");
  CHECK(m.include == std::vector<std::string>{"*.example.com"});
  CHECK(m.exclude == std::vector<std::string>{"trusted.example.com"});
  CHECK(m.config_json == R"({"mode":"redact","patterns":[{"max":3,"name":"key","regex":"sk-[a-z]+"}]})");
  CHECK(p.network_middlewares[1].name == "second");
  CHECK(p.network_middlewares[1].on_error == "fail_closed");
}

TEST_CASE("MCP with the allow-all method profile needs no rules, and its deny rules no base") {
  Policy p = parse_policy(ep({"host: mcp.example.com", "port: 443", "protocol: mcp",
                              "mcp: {allow_all_known_mcp_methods: true}", "deny_rules: [{tool: execute_code}]"}),
                          "p.yaml");
  const auto& e = p.network_policies.at(0).endpoints.at(0);
  CHECK(e.mcp.allow_all_known_mcp_methods);
  CHECK(e.deny_rules.at(0).params.at("name") == Globs{"execute_code"});
}

// ---- the error type ----

TEST_CASE("PolicyInvalid is invalid_argument, lists every problem, and names the first field") {
  try {
    parse_policy("version: 1\nfilesystem_policy:\n  read_write: [tmp, /]\n", "p.yaml");
    FAIL("expected PolicyInvalid");
  } catch (const PolicyInvalid& e) {
    CHECK(e.code() == Code::kInvalidArgument);
    CHECK(e.field() == "filesystem_policy.read_write[0]");
    REQUIRE(e.problems.size() == 2);
    CHECK(std::string(e.what()) ==
          "p.yaml:3:16: filesystem_policy.read_write[0]: must be an absolute path\n"
          "p.yaml:3:21: filesystem_policy.read_write[1]: '/' is too broad to be writable: list the directories the "
          "agent must write");
  }
}

TEST_CASE("several problems in different sections are all reported, in file order") {
  auto ps = problems_of(R"(version: 2
filesystem_policy:
  read_only: [/usr, ../etc]
process:
  run_as_user: root
landlock:
  compatibility: maybe
network_policies:
  p:
    endpoints:
      - host: "*.com"
        port: 0
    binaries: [{path: curl}]
bogus: 1
)");
  std::vector<std::string> got;
  for (const auto& p : ps) got.push_back(p.to_string());
  CHECK(got == std::vector<std::string>{
                   "p.yaml:1:10: version: unsupported version 2: must be 1",
                   "p.yaml:3:21: filesystem_policy.read_only[1]: must be an absolute path",
                   "p.yaml:5:16: process.run_as_user: root is not allowed: the agent must not run as root; use "
                   "sandbox or a numeric id from 1 to 4294967294",
                   "p.yaml:7:18: landlock.compatibility: must be one of best_effort, hard_requirement; got 'maybe'",
                   "p.yaml:11:15: network_policies.p.endpoints[0].host: a wildcard over a top-level domain is too "
                   "broad: use e.g. *.example.com, got '*.com'",
                   "p.yaml:12:15: network_policies.p.endpoints[0].port: must be an integer from 1 to 65535, got '0'",
                   "p.yaml:13:23: network_policies.p.binaries[0].path: must be an absolute path",
                   "p.yaml:14:1: bogus: unknown key 'bogus'; allowed: version, filesystem_policy, landlock, process, "
                   "network_policies, network_middlewares",
               });
}

TEST_CASE("at most 100 problems are listed, then how many more there are") {
  std::string y = "version: 1\nfilesystem_policy:\n  read_only:\n";
  for (int i = 0; i < 150; ++i) y += "    - rel" + std::to_string(i) + "\n";
  auto ps = problems_of(y);
  REQUIRE(ps.size() == 101);
  CHECK(ps[99].to_string() == "p.yaml:103:7: filesystem_policy.read_only[99]: must be an absolute path");
  CHECK(ps[100].to_string() == "p.yaml:104:7: ... and 50 more problems");
}

TEST_CASE("problems print as FILE:LINE:COL: PATH: MESSAGE") {
  Problem p{"p.yaml", 7, 7, "filesystem_policy.read_write[2]", "must be an absolute path"};
  CHECK(p.to_string() == "p.yaml:7:7: filesystem_policy.read_write[2]: must be an absolute path");
  p.path.clear();
  CHECK(p.to_string() == "p.yaml:7:7: must be an absolute path");
}

// ---- YAML and shape ----

TEST_CASE("YAML syntax errors carry their line and column") {
  CHECK(problem("version: 1\nfilesystem_policy:\n  read_only: [/usr, /lib\n") ==
        "p.yaml:4:1: invalid YAML: end of sequence flow not found");
  CHECK(problem("version: 1\nprocess: a: b\n") == "p.yaml:2:11: invalid YAML: illegal map value");
}

TEST_CASE("an empty file, a non-map, and several documents are refused") {
  CHECK(problem("") == "p.yaml:1:1: version: required: the policy is empty; start it with `version: 1`");
  CHECK(problem("# only a comment\n") ==
        "p.yaml:1:1: version: required: the policy is empty; start it with `version: 1`");
  CHECK(problem("- version: 1\n") == "p.yaml:1:1: must be a map, got a list");
  CHECK(problem("version: 1\n---\nversion: 1\n") == "p.yaml:3:1: a policy file holds one YAML document; this one has 2");
}

TEST_CASE("version is required and must be the integer 1") {
  CHECK(problem("landlock: {compatibility: best_effort}\n") == "p.yaml:1:1: version: required: start the policy with `version: 1`");
  CHECK(problem("version: 2\n") == "p.yaml:1:10: version: unsupported version 2: must be 1");
  CHECK(problem("version: \"1\"\n") == "p.yaml:1:10: version: must be the integer 1, got '1'");
  CHECK(problem("version: [1]\n") == "p.yaml:1:10: version: must be the integer 1, got a list");
}

TEST_CASE("unknown keys are refused at every level, naming the allowed keys") {
  CHECK(problem("version: 1\nfilesystem_policy:\n  raed_only: [/usr]\n") ==
        "p.yaml:3:3: filesystem_policy.raed_only: unknown key 'raed_only' (did you mean 'read_only'?); allowed: "
        "include_workdir, read_only, read_write");
  CHECK(problem("version: 1\nprocess: {user: sandbox}\n") ==
        "p.yaml:2:11: process.user: unknown key 'user'; allowed: run_as_user, run_as_group");
  auto ps = problems_of("version: 1\nnetwork_policies:\n  p:\n    endpoint: []\n    binaries: [{path: /x}]\n");
  REQUIRE(ps.size() == 2);  // and endpoints is missing
  CHECK(ps[0].to_string() ==
        "p.yaml:4:5: network_policies.p.endpoint: unknown key 'endpoint' (did you mean 'endpoints'?); allowed: name, "
        "endpoints, binaries");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protcol: rest"}))
            .find("p.yaml:8:9: network_policies.p.endpoints[0].protcol: unknown key 'protcol' (did you mean "
                  "'protocol'?); allowed: host, port, ports,") == 0);
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: rest",
                    "rules: [{allow: {method: GET, path: /x, verb: GET}}]"}))
            .find("p.yaml:9:49: network_policies.p.endpoints[0].rules[0].allow.verb: unknown key 'verb'; allowed: "
                  "method, path,") == 0);
  CHECK(problem("version: 1\nnetwork_policies:\n  p:\n    endpoints: [{host: a.b.c, port: 1}]\n    binaries: [{path: /x, "
                "mode: 1}]\n")
            .find("p.yaml:5:27: network_policies.p.binaries[0].mode: unknown key 'mode'; allowed: path, harness") == 0);
}

TEST_CASE("duplicate keys are refused") {
  CHECK(problem("version: 1\nlandlock: {compatibility: best_effort}\nlandlock: {}\n") ==
        "p.yaml:3:1: landlock: duplicate key (first at line 2)");
}

TEST_CASE("wrong YAML types are problems at the value") {
  CHECK(problem("version: 1\nfilesystem_policy:\n  read_only: /usr\n") ==
        "p.yaml:3:14: filesystem_policy.read_only: must be a list, got '/usr'");
  CHECK(problem("version: 1\nfilesystem_policy:\n  include_workdir: yes\n") ==
        "p.yaml:3:20: filesystem_policy.include_workdir: must be true or false, got 'yes'");
  CHECK(problem("version: 1\nfilesystem_policy:\n  read_only: [[/usr]]\n") ==
        "p.yaml:3:15: filesystem_policy.read_only[0]: must be a string, got a list");
  CHECK(problem("version: 1\nnetwork_policies: [a]\n") == "p.yaml:2:19: network_policies: must be a map, got a list");
  CHECK(problem(ep({"host: a.example.com", "port: https"})) ==
        "p.yaml:7:15: network_policies.p.endpoints[0].port: must be an integer from 1 to 65535, got 'https'");
}

TEST_CASE("hostile YAML is refused quickly: alias fan-out and deep nesting") {
  // Each level names the one before twice: 2^30 values if expanded.
  std::string y = ep({"host: mcp.example.com", "port: 443", "protocol: mcp", "rules:",
                      "  - allow:", "      method: tools/call", "      params:", "        a0: &a0 {name: x}"});
  for (int i = 1; i <= 30; ++i)
    y += "                a" + std::to_string(i) + ": &a" + std::to_string(i) + " {p: *a" + std::to_string(i - 1) +
         ", q: *a" + std::to_string(i - 1) + "}\n";
  auto ps = problems_of(y);
  bool reported = std::any_of(ps.begin(), ps.end(), [](const Problem& p) {
    return p.message.find("more than 100000 values (counting each use of an alias)") != std::string::npos;
  });
  CHECK(reported);

  std::string deep = "version: 1\nprocess: " + std::string(2000, '[') + std::string(2000, ']') + "\n";
  CHECK(problem(deep) == "p.yaml:2:4010: invalid YAML: nested too deeply");
}

TEST_CASE("null values mean not set") {
  Policy p = parse_policy("version: 1\nfilesystem_policy:\nprocess:\n  run_as_user:\n", "p.yaml");
  CHECK_FALSE(p.has_filesystem);
  CHECK_FALSE(p.process.run_as_user.has_value());
}

// ---- filesystem ----

TEST_CASE("filesystem paths must be absolute") {
  CHECK(problem("version: 1\nfilesystem_policy:\n  read_write:\n    - /tmp\n    - /dev/null\n    - relative\n") ==
        "p.yaml:6:7: filesystem_policy.read_write[2]: must be an absolute path");
}

TEST_CASE("the exact example: read_write[2] on line 7 column 7") {
  CHECK(problem("version: 1\nfilesystem_policy:\n  read_only: [/usr]\n  read_write:\n    - /tmp\n    - /dev/null\n"
                "    - sandbox\n") == "p.yaml:7:7: filesystem_policy.read_write[2]: must be an absolute path");
}

TEST_CASE("filesystem paths must not contain '..'") {
  CHECK(problem("version: 1\nfilesystem_policy:\n  read_only: [/usr/../etc/shadow]\n") ==
        "p.yaml:3:15: filesystem_policy.read_only[0]: must not contain '..' components");
  parse_policy("version: 1\nfilesystem_policy:\n  read_only: [/usr/..hidden, /a..b]\n", "p.yaml");  // not components
}

TEST_CASE("filesystem paths are at most 4096 characters") {
  std::string ok = "/" + std::string(4095, 'a');
  parse_policy("version: 1\nfilesystem_policy:\n  read_only: [" + ok + "]\n", "p.yaml");
  CHECK(problem("version: 1\nfilesystem_policy:\n  read_only: [" + ok + "b]\n") ==
        "p.yaml:3:15: filesystem_policy.read_only[0]: is 4097 characters long; at most 4096");
}

TEST_CASE("at most 256 filesystem paths in all") {
  std::string y = "version: 1\nfilesystem_policy:\n  read_only:\n";
  for (int i = 0; i < 200; ++i) y += "    - /ro" + std::to_string(i) + "\n";
  y += "  read_write:\n";
  for (int i = 0; i < 56; ++i) y += "    - /rw" + std::to_string(i) + "\n";
  parse_policy(y, "p.yaml");
  CHECK(problem(y + "    - /one-more\n") ==
        "p.yaml:3:3: filesystem_policy: 257 paths in read_only and read_write together; at most 256");
}

TEST_CASE("'/' is too broad to write but may be read") {
  CHECK(problem("version: 1\nfilesystem_policy:\n  read_write: [/tmp, //]\n") ==
        "p.yaml:3:22: filesystem_policy.read_write[1]: '/' is too broad to be writable: list the directories the "
        "agent must write");
  parse_policy("version: 1\nfilesystem_policy:\n  read_only: [/]\n", "p.yaml");
}

// ---- landlock, process ----

TEST_CASE("landlock.compatibility is best_effort or hard_requirement") {
  CHECK(problem("version: 1\nlandlock:\n  compatibility: strict\n") ==
        "p.yaml:3:18: landlock.compatibility: must be one of best_effort, hard_requirement; got 'strict'");
  CHECK(parse_policy("version: 1\nlandlock: {}\n", "p.yaml").landlock == LandlockCompatibility::kBestEffort);
}

TEST_CASE("run_as_user and run_as_group refuse root") {
  CHECK(problem("version: 1\nprocess:\n  run_as_user: root\n") ==
        "p.yaml:3:16: process.run_as_user: root is not allowed: the agent must not run as root; use sandbox or a "
        "numeric id from 1 to 4294967294");
  CHECK(problem("version: 1\nprocess:\n  run_as_group: 0\n") ==
        "p.yaml:3:17: process.run_as_group: root is not allowed: the agent must not run as root; use sandbox or a "
        "numeric id from 1 to 4294967294");
  CHECK(problem("version: 1\nprocess:\n  run_as_user: \"000\"\n").find("root is not allowed") != std::string::npos);
}

TEST_CASE("run_as_user and run_as_group are sandbox or an id from 1 to 4294967294") {
  CHECK(problem("version: 1\nprocess:\n  run_as_user: nobody\n") ==
        "p.yaml:3:16: process.run_as_user: must be sandbox or a numeric id from 1 to 4294967294, got 'nobody'");
  CHECK(problem("version: 1\nprocess:\n  run_as_group: 4294967295\n") ==
        "p.yaml:3:17: process.run_as_group: must be at most 4294967294 (4294967295 means no id), got '4294967295'");
  CHECK(problem("version: 1\nprocess:\n  run_as_user: \"-5\"\n").find("must be sandbox or a numeric id") !=
        std::string::npos);
  CHECK(problem("version: 1\nprocess:\n  run_as_user: 99999999999999999999999\n").find("must be at most") !=
        std::string::npos);
  Policy p = parse_policy("version: 1\nprocess: {run_as_user: 1, run_as_group: sandbox}\n", "p.yaml");
  CHECK(p.process.run_as_user == "1");
  CHECK(p.process.run_as_group == "sandbox");
}

// ---- network policies ----

TEST_CASE("a network policy needs endpoints and binaries") {
  CHECK(problem("version: 1\nnetwork_policies:\n  p:\n    endpoints: [{host: a.example.com, port: 443}]\n") ==
        "p.yaml:4:5: network_policies.p.binaries: required: the executables allowed to use these endpoints");
  CHECK(problem("version: 1\nnetwork_policies:\n  p:\n    binaries: [{path: /x}]\n") ==
        "p.yaml:4:5: network_policies.p.endpoints: required: the hosts and ports this entry opens");
  CHECK(problem("version: 1\nnetwork_policies:\n  p:\n    endpoints: []\n    binaries: [{path: /x}]\n") ==
        "p.yaml:4:16: network_policies.p.endpoints: must list at least one endpoint");
}

TEST_CASE("binary paths are absolute; * and ** globs are fine") {
  CHECK(problem("version: 1\nnetwork_policies:\n  p:\n    endpoints: [{host: a.b.c, port: 1}]\n"
                "    binaries:\n      - path: bin/curl\n") ==
        "p.yaml:6:15: network_policies.p.binaries[0].path: must be an absolute path");
  CHECK(problem("version: 1\nnetwork_policies:\n  p:\n    endpoints: [{host: a.b.c, port: 1}]\n"
                "    binaries:\n      - harness: false\n") ==
        "p.yaml:6:9: network_policies.p.binaries[0].path: required: the executable's absolute path (globs * and ** "
        "allowed)");
  parse_policy("version: 1\nnetwork_policies:\n  p:\n    endpoints: [{host: a.b.c, port: 1}]\n"
               "    binaries: [{path: \"/home/*/.local/bin/**\"}]\n",
               "p.yaml");
}

TEST_CASE("ports are 1..65535, given as port or ports") {
  CHECK(problem(ep({"host: a.example.com", "port: 0"})) ==
        "p.yaml:7:15: network_policies.p.endpoints[0].port: must be an integer from 1 to 65535, got '0'");
  CHECK(problem(ep({"host: a.example.com", "port: 65536"})) ==
        "p.yaml:7:15: network_policies.p.endpoints[0].port: must be an integer from 1 to 65535, got '65536'");
  CHECK(problem(ep({"host: a.example.com", "ports: [80, 70000]"})) ==
        "p.yaml:7:21: network_policies.p.endpoints[0].ports[1]: must be an integer from 1 to 65535, got '70000'");
  CHECK(problem(ep({"host: a.example.com", "port: 80", "ports: [443]"})) ==
        "p.yaml:8:16: network_policies.p.endpoints[0].ports: port and ports are mutually exclusive: list every port "
        "under ports");
  CHECK(problem(ep({"host: a.example.com"})) ==
        "p.yaml:6:9: network_policies.p.endpoints[0].port: required: the TCP port (or a list under ports)");
  CHECK(problem(ep({"host: a.example.com", "ports: []"})) ==
        "p.yaml:7:16: network_policies.p.endpoints[0].ports: must list at least one port");
}

TEST_CASE("host wildcards: only inside the first label, never bare, never over a TLD") {
  for (const char* ok : {"*.example.com", "**.example.com", "*-aiplatform.googleapis.com", "api.example.com",
                         "10.1.2.3", "fd00::1", "example.com."}) {
    CAPTURE(ok);
    parse_policy(ep({std::string("host: \"") + ok + "\"", "port: 443"}), "p.yaml");
  }
  CHECK(problem(ep({"host: \"*\"", "port: 443"})) ==
        "p.yaml:6:15: network_policies.p.endpoints[0].host: a bare wildcard would allow every host: name the hosts, "
        "e.g. *.example.com");
  CHECK(problem(ep({"host: \"**\"", "port: 443"})).find("a bare wildcard") != std::string::npos);
  CHECK(problem(ep({"host: \"*.com\"", "port: 443"})) ==
        "p.yaml:6:15: network_policies.p.endpoints[0].host: a wildcard over a top-level domain is too broad: use "
        "e.g. *.example.com, got '*.com'");
  CHECK(problem(ep({"host: \"**.com\"", "port: 443"})).find("top-level domain") != std::string::npos);
  CHECK(problem(ep({"host: api.*.com", "port: 443"})) ==
        "p.yaml:6:15: network_policies.p.endpoints[0].host: a wildcard is allowed only in the first label (e.g. "
        "*.example.com), got 'api.*.com'");
  CHECK(problem(ep({"host: \"a**.example.com\"", "port: 443"})).find("'**' must be the whole first label") !=
        std::string::npos);
  CHECK(problem(ep({"host: https://api.example.com", "port: 443"})) ==
        "p.yaml:6:15: network_policies.p.endpoints[0].host: must be a bare host name or IP address, without scheme, "
        "port or path; got 'https://api.example.com'");
  CHECK(problem(ep({"host: api..example.com", "port: 443"})).find("empty or over-long") != std::string::npos);
  CHECK(problem(ep({"host: api!.example.com", "port: 443"})).find("invalid character '!'") != std::string::npos);
}

TEST_CASE("host is required unless allowed_ips supplies the destination") {
  CHECK(problem(ep({"port: 443"})) ==
        "p.yaml:6:9: network_policies.p.endpoints[0].host: required (only an endpoint with allowed_ips may omit it)");
  parse_policy(ep({"port: 443", "allowed_ips: [10.0.0.0/8]"}), "p.yaml");
  CHECK(problem(ep({"port: 443", "protocol: tcp", "allowed_ips: [10.0.0.0/8]"})) ==
        "p.yaml:6:9: network_policies.p.endpoints[0].host: required with protocol tcp: a DNS host name");
}

TEST_CASE("allowed_ips are IPs or CIDRs and never loopback, link-local or unspecified") {
  CHECK(problem(ep({"host: db.example.com", "port: 5432", "allowed_ips: [10.0.0.0/33]"})) ==
        "p.yaml:8:23: network_policies.p.endpoints[0].allowed_ips[0]: must be an IP address or CIDR (e.g. "
        "10.0.0.0/8), got '10.0.0.0/33'");
  CHECK(problem(ep({"host: db.example.com", "port: 5432", "allowed_ips: [127.0.0.1]"})) ==
        "p.yaml:8:23: network_policies.p.endpoints[0].allowed_ips[0]: '127.0.0.1' overlaps loopback, which no policy "
        "may open");
  CHECK(problem(ep({"host: db.example.com", "port: 5432", "allowed_ips: [0.0.0.0/0]"})).find("overlaps") !=
        std::string::npos);
  CHECK(problem(ep({"host: db.example.com", "port: 5432", "allowed_ips: [169.254.169.254]"})).find("link-local") !=
        std::string::npos);
  CHECK(problem(ep({"host: db.example.com", "port: 5432", "allowed_ips: [\"::1\"]"})).find("loopback") !=
        std::string::npos);
}

TEST_CASE("protocol, tls, enforcement and access take only their documented values") {
  CHECK(problem(ep({"host: a.example.com", "port: 21", "protocol: ftp"})) ==
        "p.yaml:8:19: network_policies.p.endpoints[0].protocol: must be one of tcp, rest, websocket, graphql, sql, "
        "json-rpc, mcp; got 'ftp'");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "tls: mitm"})) ==
        "p.yaml:8:14: network_policies.p.endpoints[0].tls: must be one of skip, terminate, passthrough; got 'mitm'");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: rest", "access: full", "enforcement: block"})) ==
        "p.yaml:10:22: network_policies.p.endpoints[0].enforcement: must be one of enforce, audit; got 'block'");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: rest", "access: read-all"})) ==
        "p.yaml:9:17: network_policies.p.endpoints[0].access: must be one of read-only, read-write, full; got "
        "'read-all'");
}

TEST_CASE("access and rules are mutually exclusive") {
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: rest", "access: read-only",
                    "rules: [{allow: {method: GET, path: /x}}]"})) ==
        "p.yaml:9:17: network_policies.p.endpoints[0].access: access and rules are mutually exclusive: keep one");
}

TEST_CASE("an inspected protocol needs access or rules") {
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: rest"})) ==
        "p.yaml:6:9: network_policies.p.endpoints[0]: protocol rest needs access or rules to say what is allowed");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: json-rpc"})) ==
        "p.yaml:6:9: network_policies.p.endpoints[0].rules: required with protocol json-rpc: rules with allow.method");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: mcp"})) ==
        "p.yaml:6:9: network_policies.p.endpoints[0].rules: required with protocol mcp unless "
        "mcp.allow_all_known_mcp_methods is true");
}

TEST_CASE("mcp and json-rpc take no access preset") {
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: mcp", "access: full"})) ==
        "p.yaml:9:17: network_policies.p.endpoints[0].access: protocol mcp takes no access preset: use rules, or set "
        "mcp.allow_all_known_mcp_methods: true to allow every MCP method");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: json-rpc", "access: full"}))
            .find("protocol json-rpc takes no access preset") != std::string::npos);
}

TEST_CASE("rules: [] is refused, and so are rules that allow nothing") {
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: rest", "rules: []"})) ==
        "p.yaml:9:16: network_policies.p.endpoints[0].rules: an empty list allows nothing: use access: full, or "
        "remove rules");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: rest", "rules: [{allow: {}}]"})) ==
        "p.yaml:9:16: network_policies.p.endpoints[0].rules: no rule has an allow clause, so these rules deny "
        "everything: use access: full or fill in the allow clauses");
}

TEST_CASE("deny_rules need a protocol and an allow base, and may not be empty") {
  CHECK(problem(ep({"host: a.example.com", "port: 443", "deny_rules: [{method: POST, path: /x}]"})) ==
        "p.yaml:8:21: network_policies.p.endpoints[0].deny_rules: deny_rules need a protocol (rest, websocket, "
        "graphql, sql, json-rpc or mcp) so requests are inspected");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: rest", "rules: [{allow: {method: GET, path: /x}}]",
                    "deny_rules: []"})) ==
        "p.yaml:10:21: network_policies.p.endpoints[0].deny_rules: an empty list denies nothing: remove deny_rules");
  // rest without access or rules: both the base and the endpoint are reported.
  auto ps = problems_of(ep({"host: a.example.com", "port: 443", "protocol: rest", "deny_rules: [{method: POST, path: /x}]"}));
  REQUIRE(ps.size() == 2);
  CHECK(ps[1].to_string() ==
        "p.yaml:9:21: network_policies.p.endpoints[0].deny_rules: deny_rules need rules or access to define what is "
        "allowed first");
}

TEST_CASE("rule fields per protocol") {
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: rest", "rules: [{allow: {method: GET}}]"})) ==
        "p.yaml:9:25: network_policies.p.endpoints[0].rules[0].allow.path: required: a URL path glob such as "
        "/repos/** (** matches any path)");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: rest",
                    "rules: [{allow: {method: GET, path: /x, operation_type: query}}]"})) ==
        "p.yaml:9:65: network_policies.p.endpoints[0].rules[0].allow.operation_type: does not apply to protocol rest "
        "rules (they use method, path, query)");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: rest",
                    "deny_rules: [{path: /x}]", "access: read-write"})) ==
        "p.yaml:9:22: network_policies.p.endpoints[0].deny_rules[0].method: required: an HTTP method such as GET, or *");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: websocket",
                    "rules: [{allow: {method: POST, path: /ws}}]"})) ==
        "p.yaml:9:34: network_policies.p.endpoints[0].rules[0].allow.method: must be one of GET, WEBSOCKET_TEXT, *; "
        "got 'POST'");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: websocket",
                    "rules: [{allow: {method: GET, path: /ws, operation_type: query}}]"})) ==
        "p.yaml:9:25: network_policies.p.endpoints[0].rules[0].allow: do not combine method/path/query with "
        "operation_type/operation_name/fields in one rule");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: graphql",
                    "rules: [{allow: {operation_type: upsert}}]"})) ==
        "p.yaml:9:42: network_policies.p.endpoints[0].rules[0].allow.operation_type: must be one of query, mutation, "
        "subscription, *; got 'upsert'");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: json-rpc", "rules: [{allow: {method: \"reports.*\"}}]"})) ==
        "p.yaml:9:34: network_policies.p.endpoints[0].rules[0].allow.method: must be an exact JSON-RPC method name, "
        "or * alone for all; got 'reports.*'");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: rest",
                    "rules: [{allow: {method: GET, path: /x, query: {tag: {any: []}}}}]"})) ==
        "p.yaml:9:68: network_policies.p.endpoints[0].rules[0].allow.query.tag.any: must list at least one glob");
}

TEST_CASE("MCP rules: explicit methods, tools only with tools/call, no broad rule beside tool rules") {
  auto mcp = [](const std::string& rules) {
    return ep({"host: mcp.example.com", "port: 443", "protocol: mcp", "rules: " + rules});
  };
  CHECK(problem(mcp("[{allow: {method: \"*\"}}]")) ==
        "p.yaml:9:34: network_policies.p.endpoints[0].rules[0].allow.method: '*' is not an MCP method: name the "
        "methods, or omit method and set mcp.allow_all_known_mcp_methods: true");
  CHECK(problem(mcp("[{allow: {tool: search}}]")) ==
        "p.yaml:9:25: network_policies.p.endpoints[0].rules[0].allow.method: required unless "
        "mcp.allow_all_known_mcp_methods is true");
  CHECK(problem(mcp("[{allow: {method: tools/list, tool: search}}]")) ==
        "p.yaml:9:34: network_policies.p.endpoints[0].rules[0].allow.method: tool and params select tools/call "
        "requests: set method: tools/call");
  CHECK(problem(mcp("[{allow: {method: \"prompts/*\"}}]")).find("globs are allowed only for the tools/ methods") !=
        std::string::npos);
  CHECK(problem(mcp("[{allow: {method: tools/call, params: {arguments: {path: x}}}}]"))
            .find("only params.name (the tool name) can be matched today, not params.arguments.path") !=
        std::string::npos);
  CHECK(problem(mcp("[{allow: {method: tools/call}}, {allow: {method: tools/call, tool: search}}]")) ==
        "p.yaml:9:25: network_policies.p.endpoints[0].rules[0].allow: this rule covers every tools/call and would "
        "override the tool-specific rules: add tool, or remove the tool-specific rules");
  CHECK(problem(ep({"host: mcp.example.com", "port: 443", "protocol: mcp", "mcp: {strict_tool_names: false}",
                    "rules: [{allow: {method: tools/call, tool: \"get_*\"}}]"}))
            .find("wildcard tool matchers need mcp.strict_tool_names to stay true") != std::string::npos);
}

TEST_CASE("protocol tcp refuses L7 fields and IP-literal hosts") {
  CHECK(problem(ep({"host: redis.example.com", "port: 6379", "protocol: tcp", "access: full"})) ==
        "p.yaml:9:17: network_policies.p.endpoints[0].access: does not apply to protocol tcp, which is not "
        "inspected: remove it");
  CHECK(problem(ep({"host: 10.0.0.5", "port: 6379", "protocol: tcp"})) ==
        "p.yaml:6:15: network_policies.p.endpoints[0].host: protocol tcp needs a DNS host name, not an IP address");
  CHECK(problem(ep({"host: redis.example.com.", "port: 6379", "protocol: tcp"})).find("trailing '.'") !=
        std::string::npos);
}

TEST_CASE("options of another protocol are refused instead of ignored") {
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: rest", "access: full", "mcp: {max_body_bytes: 1}"})) ==
        "p.yaml:10:14: network_policies.p.endpoints[0].mcp: applies only to protocol mcp");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "protocol: rest", "access: full", "graphql_max_body_bytes: 9"}))
            .find("applies only to protocol graphql or websocket") != std::string::npos);
}

TEST_CASE("credential fields: signing needs a service, excludes body rewrite, binding needs a provider") {
  CHECK(problem(ep({"host: bedrock.us-east-1.amazonaws.com", "port: 443", "protocol: rest", "access: full",
                    "credential_signing: sigv4"})) ==
        "p.yaml:6:9: network_policies.p.endpoints[0].signing_service: required with credential_signing: the AWS "
        "service, e.g. bedrock");
  CHECK(problem(ep({"host: s3.amazonaws.com", "port: 443", "protocol: rest", "access: full",
                    "credential_signing: sigv5", "signing_service: s3"}))
            .find("must be one of sigv4, sigv4:body, sigv4:no_body; got 'sigv5'") != std::string::npos);
  CHECK(problem(ep({"host: s3.amazonaws.com", "port: 443", "protocol: rest", "access: full", "credential_signing: sigv4",
                    "signing_service: s3", "request_body_credential_rewrite: true"})) ==
        "p.yaml:12:42: network_policies.p.endpoints[0].request_body_credential_rewrite: mutually exclusive with "
        "credential_signing");
  CHECK(problem(ep({"host: a.example.com", "port: 443", "credential_binding: {}"})) ==
        "p.yaml:8:29: network_policies.p.endpoints[0].credential_binding.provider: required: the name of a provider "
        "attached to the sandbox");
}

TEST_CASE("network middlewares: unique orders, at most 10, include required, no brace alternates") {
  CHECK(problem("version: 1\nnetwork_middlewares:\n  a: {middleware: x/y, order: 1, endpoints: {include: [a.com]}}\n"
                "  b: {middleware: x/z, order: 1, endpoints: {include: [b.com]}}\n") ==
        "p.yaml:4:31: network_middlewares.b.order: order 1 is already used by 'a': orders must be unique");
  CHECK(problem("version: 1\nnetwork_middlewares:\n  a: {middleware: x/y, endpoints: {exclude: [a.com]}}\n") ==
        "p.yaml:3:35: network_middlewares.a.endpoints.include: required: at least one host pattern");
  CHECK(problem("version: 1\nnetwork_middlewares:\n  a: {middleware: x/y, endpoints: {include: [\"{a,b}.com\"]}}\n") ==
        "p.yaml:3:46: network_middlewares.a.endpoints.include[0]: brace alternates are not supported: list each "
        "pattern");
  CHECK(problem("version: 1\nnetwork_middlewares:\n  a: {endpoints: {include: [a.com]}}\n") ==
        "p.yaml:3:6: network_middlewares.a.middleware: required: the middleware's registered name");
  std::string y = "version: 1\nnetwork_middlewares:\n";
  for (int i = 0; i < 11; ++i)
    y += "  m" + std::to_string(i) + ": {middleware: x/y, order: " + std::to_string(i) + ", endpoints: {include: [a.com]}}\n";
  CHECK(problem(y) == "p.yaml:3:3: network_middlewares: 11 middleware configs; at most 10");
}

// ---- files ----

TEST_CASE("load_policy_file names an unreadable file, and labels problems with its path") {
  try {
    load_policy_file("/nonexistent/policy.yaml");
    FAIL("expected an error");
  } catch (const PolicyInvalid&) {
    FAIL("not a policy problem");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kInvalidArgument);
    CHECK(std::string(e.what()).find("/nonexistent/policy.yaml") != std::string::npos);
    CHECK(std::string(e.what()).find("No such file or directory") != std::string::npos);
  }
  CHECK_THROWS_WITH_AS(load_policy_file(kPolicies.string()), doctest::Contains("not a regular file"), Error);

  fs::path dir = fs::temp_directory_path() / ("bulwark-policy-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path file = dir / "bad.yaml";
  std::ofstream(file) << "version: 1\nprocess:\n  run_as_user: root\n";
  try {
    load_policy_file(file);
    FAIL("expected PolicyInvalid");
  } catch (const PolicyInvalid& e) {
    REQUIRE(e.problems.size() == 1);
    CHECK(e.problems[0].file == file.string());
    CHECK(e.problems[0].line == 3);
    CHECK(e.problems[0].column == 16);
  }
  fs::remove_all(dir);
}
