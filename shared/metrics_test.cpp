#include "shared/metrics.h"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <thread>

#include "shared/error.h"

using namespace bulwark::metrics;

TEST_CASE("values are written as Prometheus reads them") {
  CHECK(format_value(0) == "0");
  CHECK(format_value(1) == "1");
  CHECK(format_value(42) == "42");
  CHECK(format_value(-3) == "-3");
  CHECK(format_value(0.25) == "0.25");
  CHECK(format_value(0.1) == "0.1");
  CHECK(format_value(0.0025) == "0.0025");
  CHECK(format_value(1e21) == "1e+21");
  CHECK(format_value(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(format_value(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(format_value(std::nan("")) == "NaN");
}

TEST_CASE("label values and help texts are escaped") {
  CHECK(escape_label_value(R"(a"b\c)" "\n") == R"(a\"b\\c\n)");
  CHECK(escape_label_value("plain /v1/sandboxes/{sandbox_id}") == "plain /v1/sandboxes/{sandbox_id}");
  CHECK(escape_help("one\\two\nthree \"q\"") == "one\\\\two\\nthree \"q\"");
}

TEST_CASE("names are checked") {
  CHECK(valid_metric_name("bulwark_http_requests_total"));
  CHECK(valid_metric_name("ns:rule_total"));
  CHECK_FALSE(valid_metric_name("9lives"));
  CHECK_FALSE(valid_metric_name("has-dash"));
  CHECK_FALSE(valid_metric_name(""));
  CHECK(valid_label_name("route"));
  CHECK_FALSE(valid_label_name("__reserved"));
  CHECK_FALSE(valid_label_name("a:b"));
  Registry r;
  CHECK_THROWS_AS(r.counter("bad name", "x"), std::logic_error);
  CHECK_THROWS_AS(r.counter("ok_total", "x", {"bad-label"}), std::logic_error);
  CHECK_THROWS_AS(r.histogram("h_seconds", "x", {"le"}), std::logic_error);
  CHECK_THROWS_AS(r.histogram("h2_seconds", "x", {}, {1, 0.5}), std::logic_error);
}

TEST_CASE("the same family twice is the same; a different shape is refused") {
  Registry r;
  auto& a = r.counter("x_total", "X.", {"op"});
  auto& b = r.counter("x_total", "X.", {"op"});
  CHECK(&a == &b);
  CHECK(&a.with({"create"}) == &b.with({"create"}));
  CHECK_THROWS_AS(r.gauge("x_total", "X.", {"op"}), std::logic_error);
  CHECK_THROWS_AS(r.counter("x_total", "X.", {"op", "result"}), std::logic_error);
  CHECK_THROWS_AS(a.with({}), std::invalid_argument);
  CHECK_THROWS_AS(a.with({"a", "b"}), std::invalid_argument);
}

TEST_CASE("counters only rise; gauges go both ways") {
  Counter c;
  c.inc();
  c.inc(2.5);
  c.inc(-10);
  CHECK(c.value() == 3.5);
  Gauge g;
  g.set(5);
  g.inc();
  g.dec(3);
  CHECK(g.value() == 3);
}

TEST_CASE("histogram buckets are cumulative and le is inclusive") {
  Histogram h({0.1, 1, 10});
  for (double v : {0.05, 0.1, 0.5, 1.0, 5.0, 100.0}) h.observe(v);
  auto s = h.snapshot();
  CHECK(s.cumulative == std::vector<uint64_t>{2, 4, 5, 6});
  CHECK(s.count == 6);
  CHECK(s.sum == doctest::Approx(106.65));
}

TEST_CASE("render writes the exposition format exactly") {
  Registry r;
  // Registered out of order: families come out sorted by name, children by label values.
  auto& dur = r.histogram("bulwark_op_duration_seconds", "How long an op took.", {"op"}, {0.5, 1});
  dur.with({"get"}).observe(0.25);
  dur.with({"get"}).observe(2);
  auto& req = r.counter("bulwark_http_requests_total", "HTTP requests\nby route.", {"route", "code"});
  req.with({"/v1/sandboxes", "202"}).inc();
  req.with({"/v1/a\"b", "200"}).inc(3);
  r.gauge("bulwark_up", "Whether it is up.").get().set(1);
  r.gauge("bulwark_empty", "No child yet.", {"phase"});

  CHECK(r.render() ==
        "# HELP bulwark_empty No child yet.\n"
        "# TYPE bulwark_empty gauge\n"
        "# HELP bulwark_http_requests_total HTTP requests\\nby route.\n"
        "# TYPE bulwark_http_requests_total counter\n"
        "bulwark_http_requests_total{route=\"/v1/a\\\"b\",code=\"200\"} 3\n"
        "bulwark_http_requests_total{route=\"/v1/sandboxes\",code=\"202\"} 1\n"
        "# HELP bulwark_op_duration_seconds How long an op took.\n"
        "# TYPE bulwark_op_duration_seconds histogram\n"
        "bulwark_op_duration_seconds_bucket{op=\"get\",le=\"0.5\"} 1\n"
        "bulwark_op_duration_seconds_bucket{op=\"get\",le=\"1\"} 1\n"
        "bulwark_op_duration_seconds_bucket{op=\"get\",le=\"+Inf\"} 2\n"
        "bulwark_op_duration_seconds_sum{op=\"get\"} 2.25\n"
        "bulwark_op_duration_seconds_count{op=\"get\"} 2\n"
        "# HELP bulwark_up Whether it is up.\n"
        "# TYPE bulwark_up gauge\n"
        "bulwark_up 1\n");
}

TEST_CASE("a histogram without labels has only le") {
  Registry r;
  r.histogram("x_seconds", "X.", {}, {1}).get().observe(3);
  CHECK(r.render() ==
        "# HELP x_seconds X.\n"
        "# TYPE x_seconds histogram\n"
        "x_seconds_bucket{le=\"1\"} 0\n"
        "x_seconds_bucket{le=\"+Inf\"} 1\n"
        "x_seconds_sum 3\n"
        "x_seconds_count 1\n");
}

TEST_CASE("collectors run before each render; one that throws does not spoil the page") {
  Registry r;
  auto& g = r.gauge("bulwark_sandboxes", "Sandboxes by phase.", {"phase"});
  int runs = 0;
  auto counting = r.add_collector([&] {
    ++runs;
    g.with({"READY"}).set(runs);
  });
  auto failing = r.add_collector([] { throw std::runtime_error("database gone"); });
  CHECK(r.render().find("bulwark_sandboxes{phase=\"READY\"} 1\n") != std::string::npos);
  CHECK(r.render().find("bulwark_sandboxes{phase=\"READY\"} 2\n") != std::string::npos);
  {
    auto moved = std::move(counting);  // the handle moves; the collector stays registered
    CHECK(r.render().find("bulwark_sandboxes{phase=\"READY\"} 3\n") != std::string::npos);
  }
  r.render();  // its handle is gone: it runs no more
  CHECK(runs == 3);
}

TEST_CASE("counting from many threads loses nothing") {
  Registry r;
  auto& c = r.counter("n_total", "N.", {"t"});
  auto& h = r.histogram("n_seconds", "N.", {}, {0.5});
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        c.with({std::to_string(t % 2)}).inc();
        h.get().observe(1);
      }
    });
  for (auto& t : ts) t.join();
  CHECK(c.with({"0"}).value() + c.with({"1"}).value() == 40000);
  CHECK(h.get().snapshot().count == 40000);
}

TEST_CASE("/proc/self/stat is read from the last parenthesis") {
  // A command with spaces and ')' in it; utime 250, stime 150 ticks, vsize 8192, rss 3 pages.
  std::string line =
      "1234 (we ird) (name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 4 0 555 8192 3 "
      "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
  auto s = parse_proc_stat(line, 100, 4096);
  CHECK(s.cpu_seconds == doctest::Approx(4.0));
  CHECK(s.virtual_bytes == 8192);
  CHECK(s.resident_bytes == 3 * 4096);
  CHECK_THROWS_AS(parse_proc_stat("no parenthesis", 100, 4096), std::invalid_argument);
  CHECK_THROWS_AS(parse_proc_stat("1 (short) S 1 2", 100, 4096), std::invalid_argument);
}

TEST_CASE("process metrics read this process") {
  Registry r;
  auto collector = register_process_metrics(r, "test", "0.1.0");
  auto text = r.render();
  CHECK(text.find("bulwark_build_info{service=\"test\",version=\"0.1.0\"} 1\n") != std::string::npos);
  CHECK(text.find("# TYPE process_cpu_seconds_total counter\n") != std::string::npos);
  CHECK(text.find("process_resident_memory_bytes 0\n") == std::string::npos);  // a live process has memory
  CHECK(text.find("process_open_fds 0\n") == std::string::npos);
  CHECK(text.find("process_start_time_seconds ") != std::string::npos);
}

TEST_CASE("readiness lists every failing check") {
  ReadinessChecks c;
  CHECK(c.failures().empty());
  bool nats = true;
  c.add("nats", [&] { return nats ? std::string() : std::string("not connected"); });
  c.add("store", [] { return std::string(); });
  CHECK(c.failures().empty());
  nats = false;
  c.add("db", []() -> std::string { throw std::runtime_error("locked"); });
  CHECK(c.failures() == "nats: not connected\ndb: locked\n");
}

TEST_CASE("--metrics-listen takes HOST:PORT") {
  CHECK(parse_listen("127.0.0.1:9464") == std::pair<std::string, int>{"127.0.0.1", 9464});
  CHECK(parse_listen("[::1]:9464") == std::pair<std::string, int>{"::1", 9464});
  CHECK(parse_listen(":9100") == std::pair<std::string, int>{"0.0.0.0", 9100});
  for (const char* bad : {"9464", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000", "::1:9464", "host:12x"}) {
    CAPTURE(bad);
    try {
      parse_listen(bad);
      FAIL("accepted");
    } catch (const bulwark::Error& e) {
      CHECK(e.field() == "metrics-listen");
    }
  }
}

TEST_CASE("observe counts an operation by result and times it") {
  Registry r;
  auto& total = r.counter("ops_total", "Ops.", {"op", "result"});
  auto& seconds = r.histogram("op_seconds", "Op time.", {"op"}, {10});
  CHECK(observe(total, seconds, {"create"}, [] { return 7; }) == 7);
  observe(total, seconds, {"delete"}, [] {});
  CHECK_THROWS_AS(observe(total, seconds, {"create"},
                          []() -> int { throw bulwark::Error(bulwark::Code::kNotFound, "gone", "sandbox_id"); }),
                  bulwark::Error);
  CHECK_THROWS_AS(observe(total, seconds, {"create"}, [] { throw std::runtime_error("boom"); }), std::runtime_error);
  CHECK(total.with({"create", "ok"}).value() == 1);
  CHECK(total.with({"delete", "ok"}).value() == 1);
  CHECK(total.with({"create", "not_found"}).value() == 1);
  CHECK(total.with({"create", "internal"}).value() == 1);
  CHECK(seconds.with({"create"}).snapshot().count == 3);
  CHECK(result_of(nullptr) == "ok");
}
