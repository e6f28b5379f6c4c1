#pragma once
// Prometheus metrics without a dependency: counters, gauges and fixed-bucket histograms with label
// sets, kept in a thread-safe registry and rendered in the text exposition format 0.0.4.
// (Debian 12 main ships no C++ Prometheus client - `apt-cache search prometheus` lists only Go
// libraries - and the format is small enough to write here.)
//
// Each process has one registry(), served by Service on --metrics-listen (docs/observability.md).
// Instrumentation looks a family up once and keeps the reference:
//   static auto& calls = metrics::registry().counter("bulwark_x_total", "what it counts", {"op"});
//   calls.with({"create"}).inc();
// No socket here: render() is pure and tested against exact text in metrics_test.cpp.
#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace bulwark::metrics {

// A number as Prometheus writes it: the shortest text that reads back as the same double;
// "+Inf", "-Inf", "NaN".
std::string format_value(double v);
// A label value inside "...": backslash, double quote and newline escaped.
std::string escape_label_value(std::string_view v);
// A HELP text: backslash and newline escaped.
std::string escape_help(std::string_view v);
// [a-zA-Z_:][a-zA-Z0-9_:]* for metric names, [a-zA-Z_][a-zA-Z0-9_]* (not starting "__") for labels.
bool valid_metric_name(std::string_view name);
bool valid_label_name(std::string_view name);

class Counter {
 public:
  void inc(double by = 1);  // by < 0 is ignored: a counter never goes down
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

class Gauge {
 public:
  void set(double v) { v_.store(v, std::memory_order_relaxed); }
  void inc(double by = 1);
  void dec(double by = 1) { inc(-by); }
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);  // upper bounds, ascending, +Inf implied
  void observe(double v);
  // Starts a timer that observes the seconds elapsed when it is destroyed.
  struct Timer {
    Histogram* h;
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
    ~Timer();
  };
  Timer time() { return Timer{this}; }

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then the +Inf bucket (= count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;  // buckets, sum and count change together
  std::vector<uint64_t> buckets_;  // per bound, not cumulative; the last is the +Inf overflow
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Seconds buckets for request and operation latencies: 1 ms .. 60 s.
const std::vector<double>& latency_buckets();

enum class Type { kCounter, kGauge, kHistogram };

// One metric name with its HELP, TYPE and label names, and a child per set of label values.
template <class M>
class Family {
 public:
  // The child for these label values (as many as the family's label names; throws
  // std::invalid_argument otherwise). The reference stays valid as long as the registry.
  M& with(const std::vector<std::string>& values);
  M& get() { return with({}); }  // the one child of a family without labels

  const std::string& name() const { return name_; }

 private:
  friend class Registry;
  Family(std::string name, std::string help, std::vector<std::string> labels, std::function<std::unique_ptr<M>()> make)
      : name_(std::move(name)), help_(std::move(help)), labels_(std::move(labels)), make_(std::move(make)) {}
  std::string name_, help_;
  std::vector<std::string> labels_;
  std::function<std::unique_ptr<M>()> make_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_;
};

class Registry {
 public:
  // The family with this name, made on first use. Asking again with the same type and label names
  // returns the same family; anything else is a programming error (std::logic_error), as is an
  // invalid name.
  Family<Counter>& counter(const std::string& name, const std::string& help, const std::vector<std::string>& labels = {});
  Family<Gauge>& gauge(const std::string& name, const std::string& help, const std::vector<std::string>& labels = {});
  Family<Histogram>& histogram(const std::string& name, const std::string& help, const std::vector<std::string>& labels,
                               const std::vector<double>& bounds = latency_buckets());
  // Runs fn before every render, to set gauges whose truth lives elsewhere (a database, /proc),
  // for as long as the returned handle lives (it waits for a render running fn to finish). A
  // collector that throws is logged and skipped; the rest of the page is still served.
  class Collector {
   public:
    Collector() = default;
    Collector(Registry* r, uint64_t id) : r_(r), id_(id) {}
    Collector(Collector&& o) noexcept : r_(std::exchange(o.r_, nullptr)), id_(o.id_) {}
    Collector& operator=(Collector&& o) noexcept;
    ~Collector();

   private:
    Registry* r_ = nullptr;
    uint64_t id_ = 0;
  };
  [[nodiscard]] Collector add_collector(std::function<void()> fn);
  // Every family, sorted by name, children sorted by label values; text format 0.0.4.
  std::string render();

 private:
  struct Entry {
    Type type;
    std::vector<std::string> labels;
    std::unique_ptr<Family<Counter>> counter;
    std::unique_ptr<Family<Gauge>> gauge;
    std::unique_ptr<Family<Histogram>> histogram;
  };
  Entry& entry(const std::string& name, Type type, const std::vector<std::string>& labels);
  std::mutex mu_;
  std::map<std::string, Entry> families_;
  std::mutex collectors_mu_;  // held while collectors run, so two scrapes do not interleave them
  uint64_t next_collector_ = 1;
  std::map<uint64_t, std::function<void()>> collectors_;
};

// The process's registry, which Service serves on --metrics-listen.
Registry& registry();

// The content type of render()'s text.
inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

// ---- an operation counted by result and timed ----

// "ok" for none; else what the exception says: a bulwark::Error's code name ("not_found", ...),
// anything else "internal".
std::string result_of(std::exception_ptr e);

// Runs fn and returns what it returns (rethrowing what it throws), counting it in total with the
// label values `labels` plus its result (result_of) and observing its seconds in duration (labels
// only). total's label names are duration's plus "result".
template <class Fn>
auto observe(Family<Counter>& total, Family<Histogram>& duration, const std::vector<std::string>& labels, Fn&& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  auto done = [&](std::string result) {
    duration.with(labels).observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    auto l = labels;
    l.push_back(std::move(result));
    total.with(l).inc();
  };
  try {
    if constexpr (std::is_void_v<decltype(fn())>) {
      fn();
      done("ok");
    } else {
      auto r = fn();
      done("ok");
      return r;
    }
  } catch (...) {
    done(result_of(std::current_exception()));
    throw;
  }
}

// ---- process metrics (pure parsing of /proc, then the collector that uses it) ----

struct ProcessStats {
  double cpu_seconds = 0;   // user + system
  double resident_bytes = 0;
  double virtual_bytes = 0;
};
// /proc/self/stat's text: utime, stime (fields 14, 15) in clock ticks, vsize (23) in bytes, rss
// (24) in pages. The command (field 2) may hold spaces and parentheses: fields count from the
// last ')'. Throws std::invalid_argument on text that is not a stat line.
ProcessStats parse_proc_stat(std::string_view text, long ticks_per_second, long page_size);

// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_start_time_seconds, and bulwark_build_info{service,version} = 1,
// collected while the handle lives.
[[nodiscard]] Registry::Collector register_process_metrics(Registry& r, const std::string& service,
                                                           const std::string& version);

// ---- readiness ----

// Named checks, each answering "" when ready or the reason it is not. Pure: Service serves the
// result on /readyz.
class ReadinessChecks {
 public:
  void add(const std::string& name, std::function<std::string()> check);
  // "" when every check passes, else "name: reason" lines, one per failing check. A check that
  // throws fails with its message.
  std::string failures() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, std::function<std::string()>>> checks_;
};

// "127.0.0.1:9464", "[::1]:9464", ":9464" (all addresses) -> {host, port}. Throws Error naming
// the flag (field metrics-listen) on anything else.
std::pair<std::string, int> parse_listen(const std::string& text);

// ---- template definitions ----

template <class M>
M& Family<M>::with(const std::vector<std::string>& values) {
  if (values.size() != labels_.size())
    throw std::invalid_argument(name_ + " takes " + std::to_string(labels_.size()) + " label values, got " +
                                std::to_string(values.size()));
  std::lock_guard lock(mu_);
  auto& slot = children_[values];
  if (!slot) slot = make_();
  return *slot;
}

}  // namespace bulwark::metrics
