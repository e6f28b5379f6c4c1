// Observability end to end (docs/observability.md): every service of a real suite (nats-server,
// podman, gateway-api, scheduler, driver-podman, policy-service, privacy-router) serves /metrics,
// /readyz and /livez on --metrics-listen; one sandbox moves the counters it should; the pages
// parse strictly as the text exposition format 0.0.4; /readyz turns 503 while NATS is down.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <regex>
#include <cstring>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>

#include "shared/util.h"
#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;

namespace {

const std::vector<std::string> kServices = {"gateway-api", "scheduler", "driver-podman", "policy-service", "privacy-router"};

// One page, parsed strictly: every line is HELP, TYPE or a sample of a family typed before it;
// label values are well escaped; histogram buckets rise and end at +Inf = _count.
struct Page {
  std::map<std::string, std::string> types;     // family -> counter|gauge|histogram
  std::map<std::string, double> samples;        // name{k="v",...} (labels as written) -> value
  std::string text;

  // The value of a sample, or NaN when absent. labels as written: R"(route="/v1/x",code="200")".
  double value(const std::string& name, const std::string& labels = {}) const {
    auto it = samples.find(labels.empty() ? name : name + "{" + labels + "}");
    return it == samples.end() ? std::nan("") : it->second;
  }
};

double parse_number(const std::string& s) {
  if (s == "+Inf") return INFINITY;
  if (s == "-Inf") return -INFINITY;
  if (s == "NaN") return NAN;
  size_t used = 0;
  double v = std::stod(s, &used);
  if (used != s.size()) throw std::invalid_argument("not a number: " + s);
  return v;
}

// name{labels} value; labels' values may hold \\, \" and \n only as escapes.
Page parse_page(const std::string& text) {
  static const std::regex kHelp(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*))");
  static const std::regex kType(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)\})? (\S+))");
  Page p;
  p.text = text;
  REQUIRE_MESSAGE(!text.empty(), "empty page");
  REQUIRE_MESSAGE(text.back() == '\n', "the page must end with a newline");
  std::istringstream in(text);
  std::string line;
  std::set<std::string> helped;
  std::map<std::string, std::vector<double>> buckets;  // family{labels without le} -> cumulative counts
  std::map<std::string, double> inf_bucket;            // family_count{labels} -> its +Inf bucket
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, kHelp)) {
      CHECK_MESSAGE(helped.insert(m[1]).second, "HELP twice: ", line);
      continue;
    }
    if (std::regex_match(line, m, kType)) {
      CHECK_MESSAGE(p.types.emplace(m[1], m[2]).second, "TYPE twice: ", line);
      CHECK_MESSAGE(helped.count(m[1]), "TYPE before HELP: ", line);
      continue;
    }
    REQUIRE_MESSAGE(std::regex_match(line, m, kSample), "not an exposition line: '", line, "'");
    const std::string name = m[1], labels = m[2], value = m[3];
    double v = 0;
    REQUIRE_NOTHROW_MESSAGE(v = parse_number(value), line);
    // The family: the name itself, or for a histogram the name less _bucket/_sum/_count.
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (!p.types.count(family) && name.ends_with(suffix) && p.types.count(name.substr(0, name.size() - strlen(suffix))) &&
          p.types.at(name.substr(0, name.size() - strlen(suffix))) == "histogram")
        family = name.substr(0, name.size() - strlen(suffix));
    REQUIRE_MESSAGE(p.types.count(family), "sample of an undeclared family: ", line);
    if (p.types.at(family) == "counter") CHECK_MESSAGE(v >= 0, "negative counter: ", line);
    if (p.types.at(family) == "histogram" && name == family) FAIL("a histogram sample without a suffix: ", line);
    if (name.ends_with("_bucket") && family != name) {
      static const std::regex kLe(R"((^|,)le="([^"]*)\"$)");
      std::smatch le;
      REQUIRE_MESSAGE(std::regex_search(labels, le, kLe), "a bucket's last label must be le: ", line);
      std::string rest = labels.substr(0, static_cast<size_t>(le.position(0)));
      auto& b = buckets[family + "{" + rest + "}"];
      CHECK_MESSAGE((b.empty() || v >= b.back()), "buckets must rise: ", line);
      b.push_back(v);
      // _count comes after the buckets: remember +Inf to compare when it arrives (below).
      if (le[2] == "+Inf") inf_bucket[family + "_count" + (rest.empty() ? "" : "{" + rest + "}")] = v;
    }
    std::string key = labels.empty() ? name : name + "{" + labels + "}";
    CHECK_MESSAGE(p.samples.emplace(key, v).second, "a sample twice: ", line);
    if (name.ends_with("_count") && family != name) {
      auto inf = inf_bucket.find(key);
      REQUIRE_MESSAGE(inf != inf_bucket.end(), "_count without a +Inf bucket before it: ", line);
      CHECK_MESSAGE(inf->second == v, "+Inf bucket != _count: ", line);
    }
  }
  return p;
}

struct Reply {
  int status = 0;  // 0: no answer
  std::string body, content_type;
};

Reply get(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  c.set_tcp_nodelay(true);
  c.set_connection_timeout(2);
  c.set_read_timeout(5);
  auto r = c.Get(path.c_str());
  if (!r) return {};
  return {r->status, r->body, r->get_header_value("Content-Type")};
}

Page scrape(int port) {
  auto r = get(port, "/metrics");
  REQUIRE_MESSAGE(r.status == 200, "127.0.0.1:", port, "/metrics answered ", r.status, " ", r.body);
  CHECK(r.content_type == "text/plain; version=0.0.4; charset=utf-8");
  return parse_page(r.body);
}

// Scrapes until pred holds on a page (values move as heartbeats and reports arrive).
Page scrape_until(int port, const std::function<bool(const Page&)>& pred, std::chrono::milliseconds timeout = 15s) {
  Page p;
  wait_until([&] {
    p = scrape(port);
    return pred(p);
  }, timeout);
  return p;
}

}  // namespace

TEST_CASE("every service serves Prometheus metrics and readiness; one sandbox moves the counters") {
  Suite suite(SuiteOptions{.metrics = true});
  suite.start_router();

  // Everyone is up: live, ready, and the families every service has.
  for (const auto& service : kServices) {
    CAPTURE(service);
    int port = suite.metrics_port(service);
    auto live = get(port, "/livez");
    CHECK(live.status == 200);
    CHECK(live.body == "ok\n");
    auto ready = get(port, "/readyz");
    CHECK_MESSAGE(ready.status == 200, ready.body);
    CHECK(ready.body == "ready\n");
    auto p = scrape(port);
    CHECK(p.value("bulwark_build_info", "service=\"" + service + "\",version=\"" + kVersion + "\"") == 1);
    CHECK(p.value("bulwark_nats_connected") == 1);
    CHECK(p.value("process_resident_memory_bytes") > 1e6);
    CHECK(p.value("process_open_fds") > 3);
    CHECK(p.value("process_cpu_seconds_total") >= 0);
    CHECK(std::abs(p.value("process_start_time_seconds") - static_cast<double>(std::time(nullptr))) < 600);
    CHECK(p.types["process_cpu_seconds_total"] == "counter");
    CHECK(p.types["process_resident_memory_bytes"] == "gauge");
    CHECK(get(port, "/nothing").status == 404);
  }

  // One sandbox whose agent tries an address no policy allows (the proxy refuses: a denial), then idles.
  auto s = suite.create({{"command", {"sh", "-c", "wget -q -O /dev/null http://blocked.example/ ; sleep 600"}}});
  const std::string id = s["sandbox_id"];
  suite.wait_phase(id, {"READY"}, 60s);

  // gateway-api: the create by its OpenAPI route, the GETs of wait_phase by theirs, the phase gauge,
  // the proxy's denial from the sandbox's log stream.
  auto gw = scrape_until(suite.metrics_port("gateway-api"), [](const Page& p) {
    return p.value("bulwark_denials_total", R"(layer="proxy",mode="enforce")") >= 1;
  });
  CHECK(gw.types["bulwark_http_requests_total"] == "counter");
  CHECK(gw.types["bulwark_http_request_duration_seconds"] == "histogram");
  CHECK(gw.value("bulwark_http_requests_total", R"(route="/v1/sandboxes",method="POST",code="202")") == 1);
  CHECK(gw.value("bulwark_http_request_duration_seconds_count", R"(route="/v1/sandboxes",method="POST")") == 1);
  CHECK(gw.value("bulwark_http_requests_total", R"(route="/v1/sandboxes/{sandbox_id}",method="GET",code="200")") >= 1);
  CHECK_MESSAGE(gw.text.find("/v1/sandboxes/" + id) == std::string::npos, "raw paths must not become labels");
  CHECK(gw.value("bulwark_sandboxes", R"(phase="READY")") == 1);
  CHECK(gw.value("bulwark_sandboxes", R"(phase="FAILED")") == 0);
  CHECK_MESSAGE(gw.value("bulwark_denials_total", R"(layer="proxy",mode="enforce")") >= 1, gw.text);

  // scheduler: one placement, its latency, the podman driver alive.
  auto sched = scrape(suite.metrics_port("scheduler"));
  CHECK(sched.value("bulwark_placements_total", R"(result="ok")") == 1);
  CHECK(sched.value("bulwark_placement_duration_seconds_count") == 1);
  CHECK(sched.value("bulwark_placement_duration_seconds_sum") > 0);
  CHECK(sched.value("bulwark_drivers_live", R"(kind="podman")") == 1);

  // driver-podman: the create served, the workload held, one slot fewer.
  auto drv = scrape_until(suite.metrics_port("driver-podman"),
                          [](const Page& p) { return p.value("bulwark_driver_workloads") == 1; });
  CHECK(drv.value("bulwark_driver_ops_total", R"(op="create",result="ok")") == 1);
  CHECK(drv.value("bulwark_driver_op_duration_seconds_count", R"(op="create")") == 1);
  CHECK(drv.value("bulwark_driver_workloads") == 1);
  CHECK(drv.value("bulwark_driver_free_slots") >= 1);

  // policy-service: the gateway stored the sandbox's version 1 before placing it.
  auto pol = scrape(suite.metrics_port("policy-service"));
  CHECK(pol.value("bulwark_policy_requests_total", R"(op="set",result="ok")") >= 1);
  CHECK(pol.value("bulwark_policy_request_duration_seconds_count", R"(op="set")") >= 1);
  CHECK(pol.value("bulwark_policy_versions_stored_total") >= 1);

  // An invalid policy is refused and counted.
  {
    auto c = suite.client();
    auto r = c.Put(("/v1/sandboxes/" + id + "/policy").c_str(), R"({"yaml":"version: 1\nfilesystem_policy: 7\n"})",
                   "application/json");
    REQUIRE(r);
    CHECK_MESSAGE(r->status == 400, r->body);
    auto after = scrape(suite.metrics_port("policy-service"));
    CHECK(after.value("bulwark_policy_validation_failures_total", R"(op="set")") == 1);
    CHECK(after.value("bulwark_policy_requests_total", R"(op="set",result="invalid_argument")") == 1);
  }

  // Delete: the driver counts the delete; the phase gauge follows.
  {
    auto c = suite.client();
    auto r = c.Delete(("/v1/sandboxes/" + id).c_str());
    REQUIRE(r);
    CHECK_MESSAGE(r->status == 202, r->body);
    suite.wait_phase(id, {"DELETED"});
    auto g = scrape(suite.metrics_port("gateway-api"));
    CHECK(g.value("bulwark_sandboxes", R"(phase="READY")") == 0);
    CHECK(g.value("bulwark_sandboxes", R"(phase="DELETED")") == 1);
    CHECK(g.value("bulwark_http_requests_total", R"(route="/v1/sandboxes/{sandbox_id}",method="DELETE",code="202")") == 1);
    auto d = scrape_until(suite.metrics_port("driver-podman"),
                          [](const Page& p) { return p.value("bulwark_driver_workloads") == 0; });
    CHECK(d.value("bulwark_driver_ops_total", R"(op="delete",result="ok")") == 1);
    CHECK(d.value("bulwark_driver_workloads") == 0);
  }

  // NATS down: every service says not ready, naming NATS; /livez still answers. Back up: ready again.
  suite.nats().stop();
  for (const auto& service : kServices) {
    CAPTURE(service);
    int port = suite.metrics_port(service);
    Reply r;
    bool down = wait_until([&] {
      r = get(port, "/readyz");
      return r.status == 503;
    }, 10s);
    REQUIRE_MESSAGE(down, r.status, " ", r.body);
    CHECK_MESSAGE(r.body.find("nats: not connected") != std::string::npos, r.body);
    CHECK(get(port, "/livez").status == 200);
    CHECK(scrape(port).value("bulwark_nats_connected") == 0);
  }
  suite.nats().restart();
  for (const auto& service : kServices) {
    CAPTURE(service);
    int port = suite.metrics_port(service);
    Reply r;
    bool up = wait_until([&] {
      r = get(port, "/readyz");
      return r.status == 200;
    }, 20s);
    CHECK_MESSAGE(up, r.status, " ", r.body);
  }
}

TEST_CASE("a taken --metrics-listen port stops the service with a message naming the flag") {
  NatsServer nats;
  TempDir dir;
  // nats-server's own port is taken for sure.
  auto p = Process::spawn({.argv = {bin("bulwark-scheduler"), "--nats-url", nats.url(), "--metrics-listen",
                                    "127.0.0.1:" + std::to_string(nats.port())},
                           .output_file = dir.file("s.log")});
  CHECK(p.wait() == 1);
  CHECK(read_file(dir.file("s.log")).find("metrics-listen") != std::string::npos);
  auto bad = Process::spawn({.argv = {bin("bulwark-scheduler"), "--nats-url", nats.url(), "--metrics-listen", "9464"},
                             .output_file = dir.file("bad.log")});
  CHECK(bad.wait() == 2);  // a flag error, before any connection
  CHECK(read_file(dir.file("bad.log")).find("HOST:PORT") != std::string::npos);
}

TEST_CASE("the supervisor honours --log-format json: one JSON object per line on stderr") {
  TempDir dir;
  std::string policy = dir.file("p.yaml");
  {
    std::ofstream f(policy);
    f << "version: 1\nfilesystem_policy:\n  read_only: [/bin, /etc, /proc, /usr, /lib, /lib64]\n  read_write: [/tmp, /dev/null]\n";
  }
  auto p = Process::spawn({.argv = {bin("bulwark-supervisor"), "--standalone", "--log-format", "json", "--policy", policy, "--",
                                    "/bin/true"},
                           .output_file = dir.file("sup.log")});
  REQUIRE(p.wait() == 0);
  std::istringstream lines(read_file(dir.file("sup.log")));
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    REQUIRE_MESSAGE(!j.is_discarded(), line);
    CHECK(j["service"] == "supervisor");
    CHECK(j["level"].is_string());
    CHECK(j["ts"].is_string());
    CHECK(j["msg"].is_string());
    ++n;
  }
  CHECK(n >= 2);  // confined, agent exited
}
