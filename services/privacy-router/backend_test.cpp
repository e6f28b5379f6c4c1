// Backend addresses, the provider cache, frames and audit lines (pure), then the forwarder against
// real HTTP(S) servers on 127.0.0.1.
#include <doctest/doctest.h>
#include <httplib.h>

#include <atomic>
#include <thread>

#include "services/privacy-router/backend.h"
#include "services/privacy-router/provider_cache.h"
#include "services/privacy-router/router.h"
#include "services/privacy-router/test_upstream.h"
#include "shared/error.h"
#include "tests/support/support.h"
#include "tests/support/test_pki.h"

using namespace bulwark;
using namespace bulwark::privacy_router;
using namespace std::chrono_literals;
using bulwark::privacy_router::testing::Upstream;

TEST_CASE("base_url: scheme, host, port and path prefix") {
  BaseUrl u = parse_base_url("https://api.openai.com");
  CHECK(u.https);
  CHECK(u.host == "api.openai.com");
  CHECK(u.port == 443);
  CHECK(u.prefix.empty());
  CHECK(u.origin() == "https://api.openai.com:443");

  u = parse_base_url("http://localhost:11434/v1/");
  CHECK_FALSE(u.https);
  CHECK(u.port == 11434);
  CHECK(u.prefix == "/v1");

  u = parse_base_url("http://[::1]:8000/openai");
  CHECK(u.host == "::1");
  CHECK(u.port == 8000);
  CHECK(u.prefix == "/openai");
  CHECK(u.origin() == "http://[::1]:8000");
  CHECK(parse_base_url("http://10.0.0.5").port == 80);

  for (const char* bad : {"ftp://x", "api.openai.com", "http://", "http://:80", "http://h:0", "http://h:99999",
                          "http://h:8a", "http://user:pw@h", "http://h/x?y", "http://[::1"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_base_url(bad), Error);
  }
}

TEST_CASE("upstream target: prefix plus path, without doubling /v1") {
  CHECK(upstream_target("", "/v1/chat/completions?x=1") == "/v1/chat/completions?x=1");
  CHECK(upstream_target("/v1", "/v1/chat/completions") == "/v1/chat/completions");
  CHECK(upstream_target("/api/v1", "/v1/models") == "/api/v1/models");
  CHECK(upstream_target("/openai", "/v1/chat/completions") == "/openai/v1/chat/completions");
  CHECK(upstream_target("/xv1", "/v1/models") == "/xv1/v1/models");
}

TEST_CASE("local addresses: loopback, private, link-local; everything else is public") {
  for (const char* ip : {"127.0.0.1", "127.1.2.3", "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.255",
                         "192.168.1.10", "169.254.169.254", "::1", "fd00::1", "fc12::1", "fe80::1", "fe80::1%eth0",
                         "::ffff:192.168.0.1", "::ffff:127.0.0.1"}) {
    CAPTURE(ip);
    CHECK(is_local_address(ip));
  }
  for (const char* ip : {"8.8.8.8", "172.15.0.1", "172.32.0.1", "192.169.0.1", "11.0.0.1", "100.64.0.1", "0.0.0.0",
                         "2001:4860:4860::8888", "::ffff:8.8.8.8", "fec0::1", "::", "not-an-ip", ""}) {
    CAPTURE(ip);
    CHECK_FALSE(is_local_address(ip));
  }
  CHECK(local_only_violation("ollama", {"127.0.0.1", "::1"}).empty());
  CHECK(local_only_violation("ollama", {"10.0.0.2", "93.184.216.34"}) ==
        "local-only backend ollama resolves to public address 93.184.216.34");
  CHECK(resolve_host("127.0.0.1") == std::vector<std::string>{"127.0.0.1"});
  CHECK_THROWS_AS(resolve_host("no-such-host.invalid"), Error);
}

TEST_CASE("provider cache: a TTL, invalidation, and no stale store after an invalidation") {
  auto now = ProviderCache::Clock::now();
  int fetches = 0;
  bool gateway_up = true;
  std::function<void()> during_fetch;
  ProviderCache cache(
      [&](const std::string& name) {
        ++fetches;
        if (during_fetch) during_fetch();
        if (!gateway_up) throw Error(Code::kUnavailable, "gateway down");
        v1::Provider p;
        p.set_name(name);
        p.set_base_url("v" + std::to_string(fetches));
        return p;
      },
      60s, [&] { return now; });
  CHECK(cache.get("a").base_url() == "v1");
  CHECK(cache.get("a").base_url() == "v1");
  CHECK(fetches == 1);
  gateway_up = false;
  now += 59s;
  CHECK(cache.get("a").base_url() == "v1");  // within the TTL: no need of the gateway
  now += 2s;
  CHECK_THROWS_AS(cache.get("a"), Error);  // expired and the gateway is away
  gateway_up = true;
  CHECK(cache.get("a").base_url() == "v3");
  cache.invalidate("a");
  CHECK(cache.get("a").base_url() == "v4");
  cache.invalidate("");
  CHECK(cache.get("a").base_url() == "v5");
  // An invalidation while a fetch runs: that fetch's answer is used once but not cached.
  during_fetch = [&] { cache.invalidate("a"); };
  cache.invalidate("a");
  CHECK(cache.get("a").base_url() == "v6");
  during_fetch = nullptr;
  CHECK(cache.get("a").base_url() == "v7");
  CHECK(cache.get("a").base_url() == "v7");
}

TEST_CASE("frames: seq from 0, head, chunks of at most 64 KiB, end") {
  std::vector<v1::InferenceFrame> frames;
  FrameWriter w([&](const v1::InferenceFrame& f) { frames.push_back(f); });
  CHECK(w.head(200, {{"content-type", "text/plain"}}));
  CHECK_FALSE(w.head(200, {}));  // one head only
  CHECK(w.chunk(std::string(kMaxFrameBytes * 2 + 10, 'x')));
  CHECK(w.chunk(""));
  CHECK(w.end(""));
  REQUIRE(frames.size() == 5);
  for (size_t i = 0; i < frames.size(); ++i) CHECK(frames[i].seq() == i);
  CHECK(frames[0].head().status() == 200);
  CHECK(frames[1].chunk().size() == kMaxFrameBytes);
  CHECK(frames[2].chunk().size() == kMaxFrameBytes);
  CHECK(frames[3].chunk().size() == 10);
  CHECK(frames[4].has_end());
  CHECK(w.body_bytes() == kMaxFrameBytes * 2 + 10);

  int sent = 0;
  FrameWriter broken([&](const v1::InferenceFrame&) {
    if (++sent == 2) throw Error(Code::kUnavailable, "connection closed");
  });
  CHECK(broken.head(200, {}));
  CHECK_FALSE(broken.chunk("a"));
  CHECK_FALSE(broken.chunk("b"));
  CHECK(sent == 2);
}

TEST_CASE("a router-made error is a complete response; the audit line reads as one") {
  std::vector<v1::InferenceFrame> frames;
  FrameWriter w([&](const v1::InferenceFrame& f) { frames.push_back(f); });
  answer_error(w, ApiStyle::kAnthropic, {404, "nope"});
  REQUIRE(frames.size() == 3);
  CHECK(frames[0].head().status() == 404);
  CHECK(nlohmann::json::parse(frames[1].chunk())["error"]["type"] == "not_found_error");
  CHECK(frames[2].end().error().empty());

  v1::InferenceEvent ev;
  ev.set_method("POST");
  ev.set_path("/v1/chat/completions");
  ev.set_model("gpt-x");
  ev.set_provider("openai-main");
  ev.set_backend_model("gpt-4o-mini");
  ev.set_status(200);
  ev.set_response_bytes(1234);
  ev.set_latency_ms(231.54);
  CHECK(event_line(ev) == "inference POST /v1/chat/completions model=gpt-x -> openai-main (gpt-4o-mini) 200 1234 B in 231.5 ms");
  ev.add_attempts("broken: HTTP 500");
  CHECK(event_line(ev).find("after 1 other backend") != std::string::npos);
  v1::InferenceEvent err;
  err.set_method("GET");
  err.set_path("/v2/x");
  err.set_status(404);
  err.set_error("not served");
  CHECK(event_line(err) == "inference GET /v2/x -> 404 0 B in 0.0 ms: not served");
}

// ---- the forwarder against real servers ----

namespace {

UpstreamRequest request_to(const std::string& base, const std::string& target = "/v1/chat/completions") {
  UpstreamRequest r;
  r.url = parse_base_url(base);
  r.method = "POST";
  r.target = target;
  r.headers = {{"content-type", "application/json"}, {"authorization", "Bearer sk-backend-secret"}};
  r.body = R"({"model":"m"})";
  r.secret = "sk-backend-secret";
  return r;
}

ForwardOptions quick() {
  ForwardOptions o;
  o.connect_timeout = 2s;
  o.first_byte_timeout = 2s;
  o.idle_timeout = 2s;
  return o;
}

struct Collected {
  int status = 0;
  Headers headers;
  std::vector<std::string> chunks;
  Forwarder::OnHead on_head() {
    return [this](int s, const Headers& h) {
      status = s;
      headers = h;
      return true;
    };
  }
  Forwarder::OnChunk on_chunk() {
    return [this](std::string_view d) {
      chunks.emplace_back(d);
      return true;
    };
  }
};

}  // namespace

TEST_CASE("forwarder: the request goes out as given and the body comes back piece by piece") {
  Upstream up;
  std::string seen_auth, seen_body, seen_path;
  up.srv().Post(R"(/.*)", [&](const httplib::Request& req, httplib::Response& res) {
    seen_auth = req.get_header_value("Authorization");
    seen_body = req.body;
    seen_path = req.target;
    res.set_chunked_content_provider("text/event-stream", [](size_t off, httplib::DataSink& sink) {
      if (off >= 3 * 8) {
        sink.done();
        return true;
      }
      sink.write("data: x\n\n", 9 - 1);  // 8 bytes a piece
      std::this_thread::sleep_for(50ms);
      return true;
    });
  });
  up.start();
  Forwarder f(quick());
  Collected c;
  auto r = f.forward(request_to("http://127.0.0.1:" + std::to_string(up.port()) + "/v1", "/v1/chat/completions?q=1"),
                     c.on_head(), c.on_chunk());
  CHECK(r.outcome == ForwardResult::Outcome::kCompleted);
  CHECK(c.status == 200);
  CHECK(seen_auth == "Bearer sk-backend-secret");
  CHECK(seen_body == R"({"model":"m"})");
  CHECK(seen_path == "/v1/chat/completions?q=1");
  CHECK(c.chunks.size() == 3);  // each piece as it came, not one buffered body
  CHECK(*find_header(c.headers, "content-type") == "text/event-stream");
}

TEST_CASE("forwarder: 5xx and a refused connection fail before anything is relayed; 4xx is relayed") {
  Upstream up;
  up.srv().Post("/v1/chat/completions", [](const httplib::Request&, httplib::Response& res) {
    res.status = 503;
    res.set_content("overloaded, key sk-backend-secret\nretry", "text/plain");
  });
  up.srv().Post("/v1/embeddings", [](const httplib::Request&, httplib::Response& res) {
    res.status = 401;
    res.set_content(R"({"error":"bad key"})", "application/json");
  });
  up.start();
  const std::string base = "http://127.0.0.1:" + std::to_string(up.port());
  Forwarder f(quick());
  Collected c;
  auto r = f.forward(request_to(base), c.on_head(), c.on_chunk());
  CHECK(r.outcome == ForwardResult::Outcome::kFailed);
  CHECK(r.status == 503);
  CHECK(r.error == "HTTP 503: overloaded, key **** retry");  // one line, the key scrubbed
  CHECK(c.status == 0);

  r = f.forward(request_to(base, "/v1/embeddings"), c.on_head(), c.on_chunk());
  CHECK(r.outcome == ForwardResult::Outcome::kCompleted);
  CHECK(c.status == 401);

  Collected d;
  r = f.forward(request_to("http://127.0.0.1:" + std::to_string(bulwark::testing::free_port())), d.on_head(),
                d.on_chunk());
  CHECK(r.outcome == ForwardResult::Outcome::kFailed);
  CHECK(r.error.find("cannot connect to http://127.0.0.1:") == 0);
}

TEST_CASE("forwarder: the first-byte and idle timeouts cut a silent backend") {
  Upstream up;
  up.srv().Post("/v1/chat/completions", [](const httplib::Request&, httplib::Response& res) {
    std::this_thread::sleep_for(1500ms);  // never answers within the first-byte limit
    res.set_content("late", "text/plain");
  });
  up.srv().Post("/v1/completions", [](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("text/event-stream", [](size_t off, httplib::DataSink& sink) {
      if (off == 0) {
        sink.write("data: 1\n\n", 9);
        return true;
      }
      std::this_thread::sleep_for(1500ms);  // stalls mid-stream
      sink.done();
      return true;
    });
  });
  up.start();
  const std::string base = "http://127.0.0.1:" + std::to_string(up.port());
  ForwardOptions o = quick();
  o.first_byte_timeout = 600ms;
  o.idle_timeout = 300ms;  // shorter: the deadline moves earlier when the head arrives
  Forwarder f(o);
  Collected c;
  auto t0 = std::chrono::steady_clock::now();
  auto r = f.forward(request_to(base), c.on_head(), c.on_chunk());
  CHECK(r.outcome == ForwardResult::Outcome::kFailed);
  CHECK(r.error.find("--first-byte-timeout") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - t0 < 1200ms);

  Collected d;
  t0 = std::chrono::steady_clock::now();
  r = f.forward(request_to(base, "/v1/completions"), d.on_head(), d.on_chunk());
  CHECK(std::chrono::steady_clock::now() - t0 < 550ms);
  CHECK(r.outcome == ForwardResult::Outcome::kCut);
  CHECK(r.idle_timeout);
  CHECK(r.error.find("--stream-idle-timeout") != std::string::npos);
  CHECK(d.chunks.size() == 1);
}

TEST_CASE("forwarder: HTTPS verified against --backend-ca, connected by pinned address under its name") {
  bulwark::testing::TestPki pki;
  auto srv = std::make_unique<httplib::SSLServer>(pki.leaf.get(), pki.leaf_key.get());
  REQUIRE(srv->is_valid());
  Upstream up(std::move(srv));
  std::string host_seen;
  up.srv().Post("/v1/chat/completions", [&](const httplib::Request& req, httplib::Response& res) {
    host_seen = req.get_header_value("Host");
    res.set_content(R"({"ok":true})", "application/json");
  });
  up.start();
  const std::string base = "https://localhost:" + std::to_string(up.port());

  SUBCASE("system roots only: the test CA is not trusted") {
    Forwarder f(quick());
    Collected c;
    auto r = f.forward(request_to(base), c.on_head(), c.on_chunk());
    CHECK(r.outcome == ForwardResult::Outcome::kFailed);
    CHECK(r.error.find("not trusted") != std::string::npos);
  }
  SUBCASE("with --backend-ca, pinned to 127.0.0.1 (a first address that refuses is skipped)") {
    ForwardOptions o = quick();
    o.backend_ca = pki.ca_file;
    Forwarder f(o);
    UpstreamRequest req = request_to(base);
    req.connect_ips = {"127.0.0.2", "127.0.0.1"};  // nothing listens on .2: the next address is tried
    Collected c;
    auto r = f.forward(req, c.on_head(), c.on_chunk());
    CHECK(r.outcome == ForwardResult::Outcome::kCompleted);
    CHECK(c.status == 200);
    CHECK(host_seen == "localhost:" + std::to_string(up.port()));
  }
  SUBCASE("a CA file that is not PEM stops the start") {
    ForwardOptions o = quick();
    o.backend_ca = pki.dir.file("missing.pem");
    CHECK_THROWS_AS(Forwarder{o}, Error);
  }
}
