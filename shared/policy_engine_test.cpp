#include "shared/policy_engine.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <filesystem>

using namespace bulwark;
using namespace bulwark::policy;
namespace fs = std::filesystem;

namespace {

using Engine = std::shared_ptr<const CompiledPolicy>;
using Chain = std::vector<std::string>;

const fs::path kPolicies = fs::path(BULWARK_REFERENCE_DIR) / "openshell-policies";

// network: the inside of network_policies, indented by two spaces.
Engine engine(const std::string& network) {
  return CompiledPolicy::compile(parse_policy("version: 1\nnetwork_policies:\n" + network, "p.yaml"));
}

Engine fixture(const std::string& name) { return CompiledPolicy::compile(load_policy_file(kPolicies / name)); }

const Chain kCurl = {"/usr/bin/curl"};

// One REST endpoint for curl on api.example.com:443 with the given extra endpoint lines.
Engine rest(const std::string& lines) {
  return engine(R"(  api:
    endpoints:
      - host: api.example.com
        port: 443
)" + lines + R"(
    binaries:
      - { path: /usr/bin/curl }
)");
}

RequestDecision ask(const Engine& e, const std::string& method, const std::string& target,
                    const std::string& host = "api.example.com") {
  auto c = e->decide_connect(host, 443, kCurl);
  REQUIRE(c.allow);
  return decide_request(c, method, target);
}

}  // namespace

TEST_CASE("an empty policy denies every connection") {
  auto e = CompiledPolicy::compile(Policy{});
  auto d = e->decide_connect("example.com", 443, kCurl);
  CHECK_FALSE(d.allow);
  CHECK(d.rule.empty());
  CHECK(d.reason == "no network_policies endpoint allows example.com:443");
  CHECK_FALSE(decide_request(d, "GET", "/").allow);
}

TEST_CASE("host patterns: exact, *, ** and intra-label, as egress matched them") {
  CHECK(host_matches("api.github.com", "API.GitHub.com"));
  CHECK(host_matches("api.github.com", "api.github.com."));
  CHECK(host_matches("API.github.com.", "api.github.com"));
  CHECK_FALSE(host_matches("api.github.com", "github.com"));
  CHECK(host_matches("*.example.com", "a.example.com"));
  CHECK_FALSE(host_matches("*.example.com", "a.b.example.com"));
  CHECK_FALSE(host_matches("*.example.com", "example.com"));
  CHECK(host_matches("**.example.com", "a.b.example.com"));
  CHECK(host_matches("**.example.com", "a.example.com"));
  CHECK_FALSE(host_matches("**.example.com", "example.com"));
  CHECK(host_matches("*-aiplatform.googleapis.com", "us-aiplatform.googleapis.com"));
  CHECK_FALSE(host_matches("*-aiplatform.googleapis.com", "aiplatform.googleapis.com.evil.com"));
  CHECK_FALSE(host_matches("*-aiplatform.googleapis.com", "a.us-aiplatform.googleapis.com"));
  CHECK_FALSE(host_matches("*.example.com", "evil.com"));
  CHECK_FALSE(host_matches("*.example.com", "aexample.com"));

  auto e = engine(R"(  p:
    endpoints:
      - { host: "*.one.com", port: 443 }
      - { host: "**.many.com", port: 443 }
      - { host: "*-ai.part.com", port: 443 }
      - { host: Exact.COM, port: 443 }
    binaries: [{ path: /usr/bin/curl }]
)");
  auto one = e->decide_connect("A.one.com", 443, kCurl);
  CHECK(one.allow);
  CHECK(one.rule == "network_policies.p.endpoints[0]");
  CHECK_FALSE(one.exact_host);
  CHECK_FALSE(e->decide_connect("a.b.one.com", 443, kCurl).allow);
  CHECK(e->decide_connect("a.b.many.com", 443, kCurl).rule == "network_policies.p.endpoints[1]");
  CHECK_FALSE(e->decide_connect("many.com", 443, kCurl).allow);
  CHECK(e->decide_connect("us-ai.part.com", 443, kCurl).rule == "network_policies.p.endpoints[2]");
  CHECK_FALSE(e->decide_connect("us-ai.evil.com", 443, kCurl).allow);
  auto exact = e->decide_connect("exact.com.", 443, kCurl);
  CHECK(exact.allow);
  CHECK(exact.exact_host);
}

TEST_CASE("port and ports: only the listed ports") {
  auto e = engine(R"(  p:
    endpoints:
      - { host: a.com, ports: [80, 443] }
      - { host: b.com, port: 8443 }
    binaries: [{ path: /usr/bin/curl }]
)");
  CHECK(e->decide_connect("a.com", 80, kCurl).allow);
  CHECK(e->decide_connect("a.com", 443, kCurl).allow);
  auto no = e->decide_connect("a.com", 8080, kCurl);
  CHECK_FALSE(no.allow);
  CHECK(no.reason == "no network_policies endpoint allows a.com:8080");
  CHECK(e->decide_connect("b.com", 8443, kCurl).allow);
  CHECK_FALSE(e->decide_connect("b.com", 443, kCurl).allow);
}

TEST_CASE("binaries: exact, an ancestor, * within a segment, ** across segments") {
  auto e = engine(R"(  exact:
    endpoints: [{ host: exact.com, port: 443 }]
    binaries: [{ path: /usr/local/bin/claude }]
  star:
    endpoints: [{ host: star.com, port: 443 }]
    binaries: [{ path: "/home/*/.local/bin/copilot" }]
  tree:
    endpoints: [{ host: tree.com, port: 443 }]
    binaries: [{ path: "/sandbox/.vscode-server/**" }]
)");
  auto self = e->decide_connect("exact.com", 443, Chain{"/usr/local/bin/claude"});
  CHECK(self.allow);
  CHECK(self.binary == "/usr/local/bin/claude");
  // claude spawns node spawns curl: curl inherits claude's grant.
  auto child = e->decide_connect("exact.com", 443, Chain{"/usr/bin/curl", "/usr/bin/node", "/usr/local/bin/claude"});
  CHECK(child.allow);
  CHECK(child.binary == "/usr/local/bin/claude");
  auto other = e->decide_connect("exact.com", 443, Chain{"/usr/bin/curl", "/bin/sh"});
  CHECK_FALSE(other.allow);
  CHECK(other.rule == "network_policies.exact.endpoints[0]");
  CHECK(other.reason ==
        "binary /usr/bin/curl (ancestors: /bin/sh) is not allowed to reach exact.com:443 by network_policies.exact "
        "(binaries: /usr/local/bin/claude)");
  CHECK_FALSE(e->decide_connect("exact.com", 443, Chain{}).allow);

  CHECK(e->decide_connect("star.com", 443, Chain{"/home/alice/.local/bin/copilot"}).allow);
  CHECK_FALSE(e->decide_connect("star.com", 443, Chain{"/home/a/b/.local/bin/copilot"}).allow);
  CHECK(e->decide_connect("tree.com", 443, Chain{"/sandbox/.vscode-server/bin/x/node"}).binary ==
        "/sandbox/.vscode-server/**");
  CHECK_FALSE(e->decide_connect("tree.com", 443, Chain{"/sandbox/.vscode-serverX/node"}).allow);
  // One policy's binaries do not open another policy's endpoints.
  CHECK_FALSE(e->decide_connect("star.com", 443, Chain{"/usr/local/bin/claude"}).allow);
}

TEST_CASE("a network policy that lists no binaries allows nobody") {
  Policy p;
  NetworkPolicy np;
  np.key = "open";
  Endpoint ep;
  ep.host = "a.com";
  ep.ports = {443};
  np.endpoints.push_back(ep);
  p.network_policies.push_back(np);
  auto d = CompiledPolicy::compile(p)->decide_connect("a.com", 443, kCurl);
  CHECK_FALSE(d.allow);
  CHECK(d.reason.ends_with("by network_policies.open, which lists no binaries"));
}

TEST_CASE("allowed_ips, IP literals, hostless endpoints and the first rule in file order") {
  auto e = engine(R"(  a:
    endpoints:
      - { host: "*.corp.com", port: 443, allowed_ips: [10.1.0.0/16] }
      - { host: 10.2.3.4, port: 8080 }
      - { port: 5432, allowed_ips: [10.9.0.0/16] }
    binaries: [{ path: /usr/bin/curl }]
  b:
    endpoints:
      - { host: git.corp.com, port: 443, allowed_ips: [10.3.0.0/16] }
    binaries: [{ path: /usr/bin/curl }]
)");
  auto both = e->decide_connect("git.corp.com", 443, kCurl);
  CHECK(both.rule == "network_policies.a.endpoints[0]");
  CHECK(both.allowed_ips == std::vector<std::string_view>{"10.1.0.0/16", "10.3.0.0/16"});
  CHECK(both.exact_host);  // b names it exactly
  CHECK(both.endpoints.size() == 2);
  auto wild = e->decide_connect("wiki.corp.com", 443, kCurl);
  CHECK_FALSE(wild.exact_host);
  CHECK(wild.allowed_ips == std::vector<std::string_view>{"10.1.0.0/16"});
  auto ip = e->decide_connect("10.2.3.4", 8080, kCurl);
  CHECK(ip.allowed_ips == std::vector<std::string_view>{"10.2.3.4/32"});
  auto hostless = e->decide_connect("db.anything.net", 5432, kCurl);
  CHECK(hostless.allow);
  CHECK(hostless.ips_only);
  CHECK(hostless.rule == "network_policies.a.endpoints[2]");
  CHECK_FALSE(both.ips_only);
}

TEST_CASE("inspection: L7 protocols and rules are inspected, L4 and tcp pass through") {
  auto e = engine(R"(  p:
    endpoints:
      - { host: l4.com, port: 443 }
      - { host: tcp.com, port: 6379, protocol: tcp }
      - { host: rest.com, port: 443, protocol: rest, access: read-only }
      - { host: ws.com, port: 443, protocol: websocket, access: full }
      - host: bare.com
        port: 443
        rules: [{ allow: { method: GET, path: /ok } }]
    binaries: [{ path: /usr/bin/curl }]
)");
  auto l4 = e->decide_connect("l4.com", 443, kCurl);
  CHECK_FALSE(l4.inspect);
  CHECK(l4.protocol == L7Protocol::kNone);
  auto any = decide_request(l4, "DELETE", "/anything");
  CHECK(any.allow);
  CHECK(any.rule == "network_policies.p.endpoints[0]");
  CHECK_FALSE(e->decide_connect("tcp.com", 6379, kCurl).inspect);
  auto r = e->decide_connect("rest.com", 443, kCurl);
  CHECK(r.inspect);
  CHECK(r.protocol == L7Protocol::kRest);
  CHECK(e->decide_connect("ws.com", 443, kCurl).protocol == L7Protocol::kWebsocket);
  // Rules without protocol are enforced as REST, not ignored.
  auto bare = e->decide_connect("bare.com", 443, kCurl);
  CHECK(bare.inspect);
  CHECK(bare.protocol == L7Protocol::kRest);
  CHECK(decide_request(bare, "GET", "/ok").allow);
  CHECK_FALSE(decide_request(bare, "GET", "/other").allow);
}

TEST_CASE("REST access presets expand exactly as the schema says") {
  auto ro = rest("        protocol: rest\n        access: read-only");
  for (const char* m : {"GET", "HEAD", "OPTIONS", "get"}) CHECK_MESSAGE(ask(ro, m, "/x").allow, m);
  for (const char* m : {"POST", "PUT", "PATCH", "DELETE", "CONNECT"}) CHECK_FALSE_MESSAGE(ask(ro, m, "/x").allow, m);
  auto g = ask(ro, "GET", "/x");
  CHECK(g.rule == "network_policies.api.endpoints[0].access=read-only");
  CHECK(g.reason == "GET /x allowed by access read-only (GET, HEAD, OPTIONS)");
  auto p = ask(ro, "POST", "/x");
  CHECK(p.rule == "network_policies.api.endpoints[0]");
  CHECK(p.reason ==
        "POST /x not permitted by network_policies.api.endpoints[0]: access read-only (GET, HEAD, OPTIONS) does not "
        "allow it");

  auto rw = rest("        protocol: rest\n        access: read-write");
  for (const char* m : {"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"}) CHECK_MESSAGE(ask(rw, m, "/x").allow, m);
  CHECK_FALSE(ask(rw, "DELETE", "/x").allow);

  auto full = rest("        protocol: rest\n        access: full");
  CHECK(ask(full, "DELETE", "/x").allow);
  CHECK(ask(full, "PROPFIND", "/x").allow);
}

TEST_CASE("WebSocket presets and rules: the upgrade is GET, messages are WEBSOCKET_TEXT") {
  auto ro = rest("        protocol: websocket\n        access: read-only");
  CHECK(ask(ro, "GET", "/v1/realtime").allow);
  CHECK_FALSE(ask(ro, "WEBSOCKET_TEXT", "/v1/realtime").allow);
  CHECK_FALSE(ask(ro, "HEAD", "/v1/realtime").allow);
  auto rw = rest("        protocol: websocket\n        access: read-write");
  CHECK(ask(rw, "WEBSOCKET_TEXT", "/v1/realtime").allow);
  CHECK_FALSE(ask(rw, "POST", "/v1/realtime").allow);
  auto rules = rest(R"(        protocol: websocket
        rules:
          - allow: { method: GET, path: "/v1/realtime/**" }
          - allow: { method: WEBSOCKET_TEXT, path: "/v1/realtime/**" }
        deny_rules:
          - { method: WEBSOCKET_TEXT, path: "/v1/realtime/admin/**" })");
  CHECK(ask(rules, "WEBSOCKET_TEXT", "/v1/realtime/chat").rule == "network_policies.api.endpoints[0].rules[1]");
  auto admin = ask(rules, "WEBSOCKET_TEXT", "/v1/realtime/admin/x");
  CHECK_FALSE(admin.allow);
  CHECK(admin.rule == "network_policies.api.endpoints[0].deny_rules[0]");
  CHECK(ask(rules, "GET", "/v1/realtime/admin/x").allow);  // the deny names text messages only
}

TEST_CASE("rules: method, path glob and query matchers, each reported by index") {
  auto e = rest(R"(        protocol: rest
        rules:
          - allow: { method: GET, path: "/repos/*/issues" }
          - allow:
              method: GET
              path: "/**/info/refs*"
              query: { service: "git-*" }
          - allow:
              method: POST
              path: "/**/git-upload-pack"
              query:
                tag: { any: ["v1.*", "v2.*"] }
          - allow: { method: "*", path: "/v[0-9]/item?" })");
  auto issues = ask(e, "GET", "/repos/bulwark/issues");
  CHECK(issues.allow);
  CHECK(issues.rule == "network_policies.api.endpoints[0].rules[0]");
  CHECK(issues.reason == "GET /repos/bulwark/issues allowed by allow rule GET /repos/*/issues");
  CHECK(ask(e, "HEAD", "/repos/bulwark/issues").allow);  // a GET rule covers HEAD
  CHECK_FALSE(ask(e, "POST", "/repos/bulwark/issues").allow);
  CHECK_FALSE(ask(e, "GET", "/repos/a/b/issues").allow);  // * stays within one segment
  CHECK_FALSE(ask(e, "GET", "/repos/a/issues/1").allow);

  auto refs = ask(e, "GET", "/org/repo.git/info/refs?service=git-upload-pack");
  CHECK(refs.allow);
  CHECK(refs.rule == "network_policies.api.endpoints[0].rules[1]");
  CHECK(ask(e, "GET", "/org/repo.git/info/refs?service=git%2Dreceive-pack&x=1").allow);  // decoded first
  CHECK_FALSE(ask(e, "GET", "/org/repo.git/info/refs").allow);  // the key is required
  CHECK_FALSE(ask(e, "GET", "/org/repo.git/info/refs?service=upload").allow);
  // Every value of a repeated key must match: a second value cannot ride along.
  CHECK_FALSE(ask(e, "GET", "/org/repo.git/info/refs?service=git-upload-pack&service=evil").allow);
  CHECK_FALSE(ask(e, "GET", "/org/repo.git/info/refs?service=git%ZZ").allow);

  CHECK(ask(e, "POST", "/a/b/git-upload-pack?tag=v2.1").rule == "network_policies.api.endpoints[0].rules[2]");
  CHECK_FALSE(ask(e, "POST", "/a/b/git-upload-pack?tag=v3.0").allow);

  CHECK(ask(e, "DELETE", "/v2/items").rule == "network_policies.api.endpoints[0].rules[3]");
  CHECK_FALSE(ask(e, "DELETE", "/vX/items").allow);
  CHECK_FALSE(ask(e, "DELETE", "/v2/item/").allow);  // ? is one character, never '/'
}

TEST_CASE("deny_rules win over access and over allow rules") {
  auto e = rest(R"(        protocol: rest
        access: read-write
        deny_rules:
          - { method: POST, path: "/repos/*/pulls/*/reviews" }
          - { method: "*", path: "/repos/*/rulesets" }
          - method: GET
            path: "/search"
            query: { q: "*secret*" })");
  CHECK(ask(e, "POST", "/repos/a/pulls").allow);
  auto review = ask(e, "POST", "/repos/a/pulls/1/reviews");
  CHECK_FALSE(review.allow);
  CHECK(review.rule == "network_policies.api.endpoints[0].deny_rules[0]");
  CHECK(review.reason == "POST /repos/a/pulls/1/reviews denied by deny rule POST /repos/*/pulls/*/reviews");
  CHECK(ask(e, "GET", "/repos/a/rulesets").rule == "network_policies.api.endpoints[0].deny_rules[1]");
  CHECK(ask(e, "GET", "/search?q=ok").allow);
  // One matching value among several is enough to deny.
  auto q = ask(e, "GET", "/search?q=ok&q=top+secret+stuff");
  CHECK_FALSE(q.allow);
  CHECK(q.rule == "network_policies.api.endpoints[0].deny_rules[2]");
  // A GET deny covers HEAD too.
  CHECK_FALSE(ask(e, "HEAD", "/search?q=secret").allow);

  auto rules = rest(R"(        protocol: rest
        rules:
          - allow: { method: "*", path: "/**" }
        deny_rules:
          - { method: DELETE, path: "/repos/*/hooks/*" })");
  CHECK(ask(rules, "DELETE", "/repos/a/keys/1").allow);
  CHECK_FALSE(ask(rules, "DELETE", "/repos/a/hooks/1").allow);
  // Normalised before the deny rule sees it.
  auto dodge = ask(rules, "delete", "/repos/a/./hooks//1");
  CHECK_FALSE(dodge.allow);
  CHECK(dodge.path == "/repos/a/hooks/1");
}

TEST_CASE("across policies: any endpoint's allow grants, any enforcing endpoint's deny rule wins") {
  auto e = engine(R"(  broad:
    endpoints: [{ host: api.example.com, port: 443, protocol: rest, access: full }]
    binaries: [{ path: /usr/bin/curl }]
  narrow:
    endpoints:
      - host: api.example.com
        port: 443
        protocol: rest
        access: read-only
        deny_rules: [{ method: DELETE, path: "/repos/**" }]
    binaries: [{ path: /usr/bin/curl }]
  watched:
    endpoints:
      - host: api.example.com
        port: 443
        protocol: rest
        enforcement: audit
        access: read-only
        deny_rules: [{ method: PUT, path: "/repos/**" }]
    binaries: [{ path: /usr/bin/curl }]
)");
  auto post = ask(e, "POST", "/repos/a");  // broad allows what narrow does not
  CHECK(post.allow);
  CHECK(post.rule == "network_policies.broad.endpoints[0].access=full");
  auto del = ask(e, "DELETE", "/repos/a");
  CHECK_FALSE(del.allow);
  CHECK(del.rule == "network_policies.narrow.endpoints[0].deny_rules[0]");
  auto put = ask(e, "PUT", "/repos/a");  // an audit deny rule flags it, broad still allows it
  CHECK(put.allow);
  CHECK(put.audit);
  CHECK(put.rule == "network_policies.watched.endpoints[0].deny_rules[0]");
}

TEST_CASE("enforcement: audit logs violations but lets them through") {
  auto e = rest(R"(        protocol: rest
        enforcement: audit
        access: read-only
        deny_rules:
          - { method: GET, path: "/admin/**" })");
  auto ok = ask(e, "GET", "/x");
  CHECK(ok.allow);
  CHECK_FALSE(ok.audit);
  auto post = ask(e, "POST", "/x");
  CHECK(post.allow);
  CHECK(post.audit);
  CHECK(post.rule == "network_policies.api.endpoints[0]");
  CHECK(post.reason.starts_with("enforcement: audit, would deny: POST /x not permitted"));
  auto admin = ask(e, "GET", "/admin/users");
  CHECK(admin.allow);
  CHECK(admin.audit);
  CHECK(admin.rule == "network_policies.api.endpoints[0].deny_rules[0]");
  auto climb = ask(e, "GET", "/../etc");
  CHECK(climb.allow);
  CHECK(climb.audit);

  // At L4: an audit endpoint lets a binary it does not list through, flagged.
  auto c = e->decide_connect("api.example.com", 443, Chain{"/usr/bin/wget"});
  CHECK(c.allow);
  CHECK(c.audit);
  CHECK(c.binary.empty());
  CHECK(c.rule == "network_policies.api.endpoints[0]");
  CHECK(c.reason.starts_with("binary /usr/bin/wget is not allowed"));
  // The same endpoint enforcing denies it.
  auto enforced = rest("        protocol: rest\n        access: read-only");
  CHECK_FALSE(enforced->decide_connect("api.example.com", 443, Chain{"/usr/bin/wget"}).allow);
  CHECK_FALSE(enforced->decide_connect("api.example.com", 443, Chain{"/usr/bin/wget"}).audit);
}

TEST_CASE("normalisation: encodings cannot slip past a /repos/** rule") {
  auto e = rest(R"(        protocol: rest
        rules:
          - allow: { method: GET, path: "/repos/**" }
          - allow: { method: GET, path: "/status" })");
  struct Case {
    const char* target;
    bool allow;
    const char* path;  // the canonical path, "" when refused
  };
  const Case cases[] = {
      {"/repos/a/b", true, "/repos/a/b"},
      {"/repos/../admin", false, "/admin"},
      {"/repos/%2e%2e/admin", false, "/admin"},
      {"/repos/%2E%2e/admin", false, "/admin"},
      {"/repos/.%2E/admin", false, "/admin"},
      {"/repos/..;/admin", false, "/admin"},
      {"/repos/x;jsessionid=1/../../admin", false, "/admin"},
      {"/repos/a%2Fb", false, ""},
      {"/repos/a%2fb", false, ""},
      {"/repos/..%5Cadmin", false, ""},
      {"/repos\\..\\admin", false, ""},
      {"/..", false, ""},
      {"/repos/../../admin", false, ""},
      {"/repos/%00", false, ""},
      {"/repos/%zz", false, ""},
      {"/repos/%", false, ""},
      {"/repos/a#frag", false, ""},
      {"//repos//a", true, "/repos/a"},
      {"/repos/./a/.", true, "/repos/a/"},
      {"/%72epos/%7Ea%20b", true, "/repos/~a%20b"},
      {"/REPOS/a", false, "/REPOS/a"},
      {"/status", true, "/status"},
      {"/status/", false, "/status/"},
      {"/status/.", false, "/status/"},
      {"/repos/a/..", true, "/repos/"},
      {"/repos", false, "/repos"},
      {"http://api.example.com/repos/a?x=1", true, "/repos/a"},
      {"HTTPS://api.example.com", false, "/"},
      {"*", false, ""},
      {"repos/a", false, ""},
  };
  for (const Case& c : cases) {
    auto d = ask(e, "GET", c.target);
    CHECK_MESSAGE(d.allow == c.allow, c.target, " -> ", d.reason);
    CHECK_MESSAGE(d.path == c.path, c.target, " -> ", d.path);
    CHECK_FALSE(d.audit);
  }
  CHECK(ask(e, "GET", "/repos/a%2Fb").reason ==
        "request target '/repos/a%2Fb' refused: the path has an encoded '/' (%2F), which this endpoint does not allow");
  CHECK(ask(e, "GET", "/repos/../../admin").reason.ends_with("refused: '..' climbs above '/'"));

  // An endpoint that opts into %2F keeps it inside the segment, and still refuses dots behind it.
  auto npm = rest(R"(        protocol: rest
        allow_encoded_slash: true
        rules:
          - allow: { method: GET, path: "/@scope*" })");
  auto scoped = ask(npm, "GET", "/@scope%2fname");
  CHECK(scoped.allow);
  CHECK(scoped.path == "/@scope%2Fname");
  CHECK_FALSE(ask(npm, "GET", "/@scope%2F..%2F..%2Fadmin").allow);
  CHECK(ask(npm, "GET", "/@scope%2F..%2Fx").reason.ends_with("a '.' or '..' segment hides behind an encoded '/'"));
}

TEST_CASE("canonicalize_path by itself") {
  CHECK(canonicalize_path("", false).path == "/");
  CHECK(canonicalize_path("/a/b/..", false).path == "/a/");
  CHECK(canonicalize_path("/a/%41%7e%20%25", false).path == "/a/A~%20%25");
  CHECK(canonicalize_path("/a%3bb/c", false).path == "/a/c");
  CHECK(canonicalize_path("///", false).path == "/");
  auto bad = canonicalize_path("/%c3%a9", false);
  CHECK_FALSE(bad.ok);
  CHECK(bad.error == "the path has an encoded non-ASCII byte");
  CHECK_FALSE(canonicalize_path(std::string(5000, 'a').insert(0, "/"), false).ok);
}

TEST_CASE("endpoint path selects between endpoints on one host; body protocols are not judged here") {
  auto e = engine(R"(  gh:
    endpoints:
      - { host: api.example.com, port: 443, path: "/repos/**", protocol: rest, access: read-only }
      - { host: api.example.com, port: 443, path: /graphql, protocol: graphql, access: full }
      - { host: api.example.com, port: 443, path: /mcp, protocol: mcp, rules: [{ allow: { method: initialize } }] }
    binaries: [{ path: /usr/bin/curl }]
)");
  auto repos = ask(e, "GET", "/repos/x");
  CHECK(repos.rule == "network_policies.gh.endpoints[0].access=read-only");
  CHECK_FALSE(ask(e, "POST", "/repos/x").allow);
  auto gql = ask(e, "POST", "/graphql");
  CHECK(gql.allow);
  CHECK(gql.rule == "network_policies.gh.endpoints[1].access=full");
  auto mcp = ask(e, "POST", "/mcp");
  CHECK_FALSE(mcp.allow);
  CHECK(mcp.rule == "network_policies.gh.endpoints[2]");
  CHECK(mcp.reason.ends_with("protocol mcp rules are judged on the request body, which is not inspected yet"));
  auto none = ask(e, "GET", "/user");
  CHECK_FALSE(none.allow);
  CHECK(none.reason == "GET /user matches no endpoint path of this connection");
}

TEST_CASE("globs: classes, escapes, and no blow-up on hostile input") {
  CHECK(Glob("/a/*/c", '/').match("/a/b/c"));
  CHECK_FALSE(Glob("/a/*/c", '/').match("/a/b/x/c"));
  CHECK(Glob("/a/**/c", '/').match("/a/b/x/c"));
  CHECK(Glob("/a/**", '/').match("/a/"));
  CHECK_FALSE(Glob("/a/**", '/').match("/a"));
  CHECK(Glob("[!0]x", '/').match("1x"));
  CHECK_FALSE(Glob("[!0]x", '/').match("0x"));
  CHECK(Glob("[^a-c]", '/').match("d"));
  CHECK(Glob("[]]", '/').match("]"));
  CHECK(Glob("a\\*", '/').match("a*"));
  CHECK_FALSE(Glob("a\\*", '/').match("ab"));
  CHECK(Glob("v1.*", 0).match("v1.2/3"));  // no separator: * is **
  CHECK_THROWS_AS(Glob("[abc", '/'), Error);
  // Past 63 tokens the automaton runs on wider bit sets: same answers.
  Glob wide("/*/" + std::string(70, 'a') + "/**/x?", '/');
  CHECK(wide.match("/r/" + std::string(70, 'a') + "/b/c/xy"));
  CHECK_FALSE(wide.match("/r/s/" + std::string(70, 'a') + "/b/c/xy"));
  CHECK_FALSE(wide.match("/r/" + std::string(70, 'a') + "/b/c/x/"));

  // Classic backtracking killer: linear here.
  Glob evil("*a*a*a*a*a*a*a*a*a*a*b", 0);
  std::string input(20000, 'a');
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(evil.match(input));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));

  try {
    rest("        protocol: rest\n        rules: [{ allow: { method: GET, path: \"/a[\" } }]");
    FAIL("a malformed glob must not compile");
  } catch (const Error& err) {
    CHECK(err.field() == "network_policies.api.endpoints[0].rules[0].path");
    CHECK(std::string(err.what()).find("unterminated '['") != std::string::npos);
  }
}

TEST_CASE("a connection keeps the policy snapshot that admitted it across a swap") {
  std::atomic<std::shared_ptr<const CompiledPolicy>> live{rest("        protocol: rest\n        access: full")};
  auto conn = live.load()->decide_connect("api.example.com", 443, kCurl);
  live.store(rest("        protocol: rest\n        access: read-only"));
  CHECK(decide_request(conn, "DELETE", "/x").allow);  // the old snapshot decides this connection
  auto fresh = live.load()->decide_connect("api.example.com", 443, kCurl);
  CHECK_FALSE(decide_request(fresh, "DELETE", "/x").allow);
}

TEST_CASE("every example policy compiles") {
  size_t n = 0;
  for (const auto& entry : fs::directory_iterator(kPolicies)) {
    if (entry.path().extension() != ".yaml") continue;
    CAPTURE(entry.path().string());
    CHECK_NOTHROW(CompiledPolicy::compile(load_policy_file(entry.path())));
    ++n;
  }
  CHECK(n >= 4);
}

TEST_CASE("quickstart.yaml: curl reads the GitHub API and writes nothing") {
  auto e = fixture("quickstart.yaml");
  auto c = e->decide_connect("api.github.com", 443, kCurl);
  CHECK(c.allow);
  CHECK(c.inspect);
  CHECK(c.rule == "network_policies.github_api.endpoints[0]");
  CHECK(c.binary == "/usr/bin/curl");
  auto get = decide_request(c, "GET", "/repos/NVIDIA/OpenShell");
  CHECK(get.allow);
  CHECK(get.rule == "network_policies.github_api.endpoints[0].access=read-only");
  CHECK_FALSE(decide_request(c, "POST", "/repos/NVIDIA/OpenShell/issues").allow);
  CHECK_FALSE(decide_request(c, "DELETE", "/repos/NVIDIA/OpenShell").allow);
  CHECK_FALSE(e->decide_connect("api.github.com", 443, Chain{"/usr/bin/python3"}).allow);
  CHECK_FALSE(e->decide_connect("github.com", 443, kCurl).allow);
}

TEST_CASE("full-fixture.yaml: git over HTTPS by rules, copilot and claude at L4") {
  auto e = fixture("full-fixture.yaml");
  const Chain git = {"/usr/bin/git"};
  auto c = e->decide_connect("github.com", 443, git);
  CHECK(c.allow);
  CHECK(c.inspect);
  CHECK(c.rule == "network_policies.github_ssh_over_https.endpoints[0]");
  auto refs = decide_request(c, "GET", "/NVIDIA/OpenShell.git/info/refs?service=git-upload-pack");
  CHECK(refs.allow);
  CHECK(refs.rule == "network_policies.github_ssh_over_https.endpoints[0].rules[0]");
  auto pack = decide_request(c, "POST", "/NVIDIA/OpenShell.git/git-upload-pack");
  CHECK(pack.rule == "network_policies.github_ssh_over_https.endpoints[0].rules[1]");
  CHECK_FALSE(decide_request(c, "POST", "/NVIDIA/OpenShell.git/git-receive-pack").allow);  // no pushes
  CHECK_FALSE(e->decide_connect("api.github.com", 443, git).allow);

  // node reaches github.com through copilot's L4 endpoint, uninspected.
  auto node = e->decide_connect("github.com", 443, Chain{"/usr/bin/node"});
  CHECK(node.allow);
  CHECK_FALSE(node.inspect);
  CHECK(node.rule == "network_policies.copilot.endpoints[0]");
  // git run by node matches both: the connection is inspected and only git's rules grant.
  auto both = e->decide_connect("github.com", 443, Chain{"/usr/bin/git", "/usr/bin/node"});
  CHECK(both.inspect);
  CHECK(both.rule == "network_policies.github_ssh_over_https.endpoints[0]");
  CHECK_FALSE(decide_request(both, "POST", "/NVIDIA/OpenShell.git/git-receive-pack").allow);

  auto claude = e->decide_connect("statsig.anthropic.com", 443, Chain{"/usr/bin/curl", "/usr/local/bin/claude"});
  CHECK(claude.allow);
  CHECK(claude.rule == "network_policies.claude_code.endpoints[1]");
  auto copilot = e->decide_connect(
      "api.githubcopilot.com", 443,
      Chain{"/usr/lib/node_modules/@github/copilot/node_modules/@github/copilot-linux-x64/copilot"});
  CHECK(copilot.allow);
  CHECK(copilot.binary == "/usr/lib/node_modules/@github/copilot/node_modules/@github/**/copilot");
  CHECK(e->decide_connect("api.githubcopilot.com", 443, Chain{"/home/dev/.local/bin/copilot"}).allow);
  CHECK(e->decide_connect("gitlab.com", 443, Chain{"/usr/bin/glab"}).allow);
  CHECK_FALSE(e->decide_connect("gitlab.com", 443, git).allow);
}

TEST_CASE("transparent-tcp.yaml and local-inference.yaml") {
  auto tcp = fixture("transparent-tcp.yaml");
  auto redis = tcp->decide_connect("redis.openshell.demo", 6379, Chain{"/opt/anything/redis-cli"});
  CHECK(redis.allow);
  CHECK(redis.binary == "/**");
  CHECK_FALSE(redis.inspect);
  CHECK(redis.allowed_ips == std::vector<std::string_view>{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"});
  CHECK_FALSE(tcp->decide_connect("redis.openshell.demo", 6380, Chain{"/usr/bin/redis-cli"}).allow);

  auto inf = fixture("local-inference.yaml");
  const Chain py = {"/usr/bin/python3.13"};
  auto pypi = inf->decide_connect("files.pythonhosted.org", 443, py);
  CHECK(pypi.rule == "network_policies.pypi.endpoints[1]");
  CHECK_FALSE(pypi.inspect);
  auto nv = inf->decide_connect("integrate.api.nvidia.com", 443, py);
  CHECK(nv.inspect);
  auto post = decide_request(nv, "POST", "/v1/chat/completions");
  CHECK(post.allow);
  CHECK(post.rule == "network_policies.nvidia_direct.endpoints[0].access=full");
  CHECK_FALSE(inf->decide_connect("integrate.api.nvidia.com", 443, Chain{"/usr/bin/python3"}).allow);
}

TEST_CASE("names_host and exact_hosts_on_port: what DNS answers and what a nameless transparent connection may be") {
  auto e = engine(R"(  a:
    endpoints:
      - { host: API.example.com, port: 443 }
      - { host: "*.cdn.example.com", port: 443 }
      - { host: redis.internal, port: 6379, protocol: tcp }
      - { port: 5432, allowed_ips: [10.0.0.0/8] }
    binaries:
      - { path: /usr/bin/curl }
)");
  CHECK(e->names_host("api.example.com"));
  CHECK(e->names_host("api.example.com."));
  CHECK(e->names_host("x.cdn.example.com"));
  CHECK_FALSE(e->names_host("cdn.example.com"));
  CHECK_FALSE(e->names_host("a.b.cdn.example.com"));
  CHECK(e->names_host("REDIS.internal"));
  CHECK_FALSE(e->names_host("evil.example"));
  CHECK_FALSE(e->names_host(""));
  CHECK_FALSE(e->names_host(std::string(300, 'a')));
  CHECK(e->exact_hosts_on_port(6379) == std::vector<std::string>{"redis.internal"});
  CHECK(e->exact_hosts_on_port(443) == std::vector<std::string>{"api.example.com"});
  CHECK(e->exact_hosts_on_port(5432).empty());
  CHECK(CompiledPolicy::compile(Policy{})->exact_hosts_on_port(443).empty());
}
