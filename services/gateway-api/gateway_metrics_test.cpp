#include "services/gateway-api/gateway_metrics.h"

#include <doctest/doctest.h>

#include "shared/util.h"

using namespace bulwark;
using namespace bulwark::gateway;

namespace {
bool has(const std::string& text, const std::string& s) { return text.find(s) != std::string::npos; }
}  // namespace

TEST_CASE("denial log lines are counted by layer and mode; other lines are not") {
  auto& denials = metrics::registry().counter("bulwark_denials_total", "", {"layer", "mode"});
  v1::LogLine l;
  l.set_sandbox_id("s1");
  l.set_stream("stdout");
  l.mutable_denial()->set_layer("proxy");
  count_denial(l);  // not a denial line: ignored, whatever it carries
  CHECK(denials.with({"proxy", "enforce"}).value() == 0);
  l.set_stream("denial");
  count_denial(l);
  l.mutable_denial()->set_audit(true);
  count_denial(l);
  l.mutable_denial()->set_layer("");
  count_denial(l);
  CHECK(denials.with({"proxy", "enforce"}).value() == 1);
  CHECK(denials.with({"proxy", "audit"}).value() == 1);
  CHECK(denials.with({"unknown", "audit"}).value() == 1);
}

TEST_CASE("requests are counted by route template; an unset status is httplib's 200") {
  observe_request("/v1/sandboxes/{sandbox_id}", "GET", -1, std::chrono::steady_clock::now());
  observe_request("/v1/sandboxes", "POST", 202, std::chrono::steady_clock::now());
  auto text = metrics::registry().render();
  CHECK(has(text, "bulwark_http_requests_total{route=\"/v1/sandboxes/{sandbox_id}\",method=\"GET\",code=\"200\"} 1\n"));
  CHECK(has(text, "bulwark_http_requests_total{route=\"/v1/sandboxes\",method=\"POST\",code=\"202\"} 1\n"));
  CHECK(has(text, "bulwark_http_request_duration_seconds_count{route=\"/v1/sandboxes\",method=\"POST\"} 1\n"));
}

TEST_CASE("sandboxes by phase come from the store at each scrape, every phase present") {
  TempDir dir;
  Store store(dir.file("g.db"));
  {
    auto collector = watch_sandboxes(store);
    auto text = metrics::registry().render();
    CHECK(has(text, "bulwark_sandboxes{phase=\"READY\"} 0\n"));
    CHECK(has(text, "bulwark_sandboxes{phase=\"STOPPED\"} 0\n"));
    v1::Sandbox s;
    s.set_sandbox_id("abc");
    s.set_name("one");
    s.set_phase(v1::READY);
    bool created = false;
    store.insert(s, "", &created);
    REQUIRE(created);
    CHECK(has(metrics::registry().render(), "bulwark_sandboxes{phase=\"READY\"} 1\n"));
  }
  // The handle is gone: the store is no longer read (it could be destroyed now).
  auto& g = metrics::registry().gauge("bulwark_sandboxes", "", {"phase"});
  g.with({"READY"}).set(7);
  CHECK(has(metrics::registry().render(), "bulwark_sandboxes{phase=\"READY\"} 7\n"));
}
