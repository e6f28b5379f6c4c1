#include "shared/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "shared/error.h"

namespace bulwark::metrics {

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form: 1, 0.25, 1e+21
  return std::string(buf, r.ptr);
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

namespace {
bool name_chars(std::string_view s, bool colon) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}
}  // namespace

bool valid_metric_name(std::string_view name) { return name_chars(name, true); }
bool valid_label_name(std::string_view name) { return name_chars(name, false) && !name.starts_with("__"); }

void Counter::inc(double by) {
  if (by > 0) v_.fetch_add(by, std::memory_order_relaxed);
}

void Gauge::inc(double by) { v_.fetch_add(by, std::memory_order_relaxed); }

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1, 0) {
  if (!std::is_sorted(bounds_.begin(), bounds_.end()) ||
      std::adjacent_find(bounds_.begin(), bounds_.end()) != bounds_.end())
    throw std::logic_error("histogram bounds must be strictly ascending");
}

void Histogram::observe(double v) {
  // Bucket i counts v <= bounds[i] (Prometheus' `le`); the last one everything above.
  size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  std::lock_guard lock(mu_);
  ++buckets_[i];
  sum_ += v;
  ++count_;
}

Histogram::Timer::~Timer() {
  h->observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  std::lock_guard lock(mu_);
  uint64_t total = 0;
  for (uint64_t b : buckets_) s.cumulative.push_back(total += b);
  s.sum = sum_;
  s.count = count_;
  return s;
}

const std::vector<double>& latency_buckets() {
  static const std::vector<double> kBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                              0.5,   1,      2.5,   5,    10,    30,   60};
  return kBounds;
}

Registry::Entry& Registry::entry(const std::string& name, Type type, const std::vector<std::string>& labels) {
  if (!valid_metric_name(name)) throw std::logic_error("invalid metric name '" + name + "'");
  for (const auto& l : labels)
    if (!valid_label_name(l) || (type == Type::kHistogram && l == "le"))
      throw std::logic_error("invalid label name '" + l + "' of metric " + name);
  auto [it, fresh] = families_.try_emplace(name);
  if (!fresh && (it->second.type != type || it->second.labels != labels))
    throw std::logic_error("metric " + name + " registered twice with a different type or labels");
  it->second.type = type;
  it->second.labels = labels;
  return it->second;
}

Family<Counter>& Registry::counter(const std::string& name, const std::string& help, const std::vector<std::string>& labels) {
  std::lock_guard lock(mu_);
  auto& e = entry(name, Type::kCounter, labels);
  if (!e.counter)
    e.counter.reset(new Family<Counter>(name, help, labels, [] { return std::make_unique<Counter>(); }));  // private ctor
  return *e.counter;
}

Family<Gauge>& Registry::gauge(const std::string& name, const std::string& help, const std::vector<std::string>& labels) {
  std::lock_guard lock(mu_);
  auto& e = entry(name, Type::kGauge, labels);
  if (!e.gauge) e.gauge.reset(new Family<Gauge>(name, help, labels, [] { return std::make_unique<Gauge>(); }));
  return *e.gauge;
}

Family<Histogram>& Registry::histogram(const std::string& name, const std::string& help,
                                       const std::vector<std::string>& labels, const std::vector<double>& bounds) {
  std::lock_guard lock(mu_);
  auto& e = entry(name, Type::kHistogram, labels);
  if (!e.histogram) {
    Histogram check(bounds);  // throws now, not on the first observation, when bounds are bad
    e.histogram.reset(
        new Family<Histogram>(name, help, labels, [bounds] { return std::make_unique<Histogram>(bounds); }));
  }
  return *e.histogram;
}

Registry::Collector Registry::add_collector(std::function<void()> fn) {
  std::lock_guard lock(collectors_mu_);
  uint64_t id = next_collector_++;
  collectors_.emplace(id, std::move(fn));
  return Collector(this, id);
}

Registry::Collector& Registry::Collector::operator=(Collector&& o) noexcept {
  if (this != &o) {
    Collector gone(std::move(*this));  // unregisters what this held
    r_ = std::exchange(o.r_, nullptr);
    id_ = o.id_;
  }
  return *this;
}

Registry::Collector::~Collector() {
  if (!r_) return;
  std::lock_guard lock(r_->collectors_mu_);
  r_->collectors_.erase(id_);
}

namespace {
// {a="x",b="y"} plus an optional extra pair (le for buckets); "" when there are none.
std::string label_text(const std::vector<std::string>& names, const std::vector<std::string>& values,
                       const std::string& extra_name = {}, const std::string& extra_value = {}) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i)
    out += (out.empty() ? "{" : ",") + names[i] + "=\"" + escape_label_value(values[i]) + "\"";
  if (!extra_name.empty()) out += (out.empty() ? "{" : ",") + extra_name + "=\"" + escape_label_value(extra_value) + "\"";
  return out.empty() ? out : out + "}";
}

template <class M, class Fn>
void render_family(std::string& out, const char* type, const Family<M>& f, const std::string& help,
                   const std::vector<std::string>& labels, std::mutex& mu,
                   const std::map<std::vector<std::string>, std::unique_ptr<M>>& children, Fn each) {
  out += "# HELP " + f.name() + " " + escape_help(help) + "\n";
  out += "# TYPE " + f.name() + " " + type + "\n";
  std::lock_guard lock(mu);
  for (const auto& [values, child] : children) each(out, labels, values, *child);
}
}  // namespace

std::string Registry::render() {
  {
    std::lock_guard lock(collectors_mu_);
    for (auto& [id, c] : collectors_) {
      try {
        c();
      } catch (const std::exception& e) {
        spdlog::warn("metrics collector failed: {}", e.what());
      }
    }
  }
  std::string out;
  std::lock_guard lock(mu_);
  for (auto& [name, e] : families_) {
    if (e.counter) {
      auto& f = *e.counter;
      render_family(out, "counter", f, f.help_, f.labels_, f.mu_, f.children_,
                    [&](std::string& o, const auto& names, const auto& values, const Counter& c) {
                      o += name + label_text(names, values) + " " + format_value(c.value()) + "\n";
                    });
    } else if (e.gauge) {
      auto& f = *e.gauge;
      render_family(out, "gauge", f, f.help_, f.labels_, f.mu_, f.children_,
                    [&](std::string& o, const auto& names, const auto& values, const Gauge& g) {
                      o += name + label_text(names, values) + " " + format_value(g.value()) + "\n";
                    });
    } else if (e.histogram) {
      auto& f = *e.histogram;
      render_family(out, "histogram", f, f.help_, f.labels_, f.mu_, f.children_,
                    [&](std::string& o, const auto& names, const auto& values, const Histogram& h) {
                      auto s = h.snapshot();
                      for (size_t i = 0; i < h.bounds().size(); ++i)
                        o += name + "_bucket" + label_text(names, values, "le", format_value(h.bounds()[i])) + " " +
                             std::to_string(s.cumulative[i]) + "\n";
                      o += name + "_bucket" + label_text(names, values, "le", "+Inf") + " " + std::to_string(s.count) + "\n";
                      o += name + "_sum" + label_text(names, values) + " " + format_value(s.sum) + "\n";
                      o += name + "_count" + label_text(names, values) + " " + std::to_string(s.count) + "\n";
                    });
    }
  }
  return out;
}

Registry& registry() {
  static Registry r;
  return r;
}

std::string result_of(std::exception_ptr e) {
  if (!e) return "ok";
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) {
    return code_name(err.code());
  } catch (...) {
    return "internal";
  }
}

ProcessStats parse_proc_stat(std::string_view text, long ticks_per_second, long page_size) {
  auto close = text.rfind(')');
  if (close == std::string_view::npos) throw std::invalid_argument("not a /proc/<pid>/stat line: no ')'");
  // After "pid (comm) " come the fields from 3 (state) on.
  std::istringstream in{std::string(text.substr(close + 1))};
  std::vector<std::string> f;
  for (std::string w; in >> w;) f.push_back(w);
  auto field = [&](size_t n) -> double {  // n: the 1-based field number of proc(5)
    if (n - 3 >= f.size()) throw std::invalid_argument("not a /proc/<pid>/stat line: field " + std::to_string(n) + " missing");
    return std::stod(f[n - 3]);
  };
  ProcessStats s;
  s.cpu_seconds = (field(14) + field(15)) / static_cast<double>(ticks_per_second);
  s.virtual_bytes = field(23);
  s.resident_bytes = field(24) * static_cast<double>(page_size);
  return s;
}

namespace {
// /proc files report size 0: read them as a stream.
std::string read_proc(const char* path) {
  std::ifstream in(path);
  if (!in) throw Error(Code::kInternal, std::string("cannot read ") + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

size_t open_fds() {
  size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (auto* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    if (n > 0) --n;  // the directory stream's own fd
  }
  return n;
}
}  // namespace

Registry::Collector register_process_metrics(Registry& r, const std::string& service, const std::string& version) {
  auto& cpu = r.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.").get();
  auto& rss = r.gauge("process_resident_memory_bytes", "Resident memory size in bytes.").get();
  auto& vsz = r.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.").get();
  auto& fds = r.gauge("process_open_fds", "Number of open file descriptors.").get();
  r.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
      .get()
      .set(static_cast<double>(std::time(nullptr)));
  r.gauge("bulwark_build_info", "Always 1: the service and version of this process.", {"service", "version"})
      .with({service, version})
      .set(1);
  const long ticks = ::sysconf(_SC_CLK_TCK), page = ::sysconf(_SC_PAGESIZE);
  return r.add_collector([&cpu, &rss, &vsz, &fds, ticks, page] {
    auto s = parse_proc_stat(read_proc("/proc/self/stat"), ticks, page);
    cpu.inc(s.cpu_seconds - cpu.value());  // the kernel's total is the truth; a counter only rises
    rss.set(s.resident_bytes);
    vsz.set(s.virtual_bytes);
    fds.set(static_cast<double>(open_fds()));
  });
}

void ReadinessChecks::add(const std::string& name, std::function<std::string()> check) {
  std::lock_guard lock(mu_);
  checks_.emplace_back(name, std::move(check));
}

std::string ReadinessChecks::failures() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, check] : checks_) {
    std::string why;
    try {
      why = check();
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (!why.empty()) out += name + ": " + why + "\n";
  }
  return out;
}

std::pair<std::string, int> parse_listen(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Error(Code::kInvalidArgument, "--metrics-listen '" + text + "': " + why + " (give HOST:PORT, e.g. 127.0.0.1:9464)",
                 "metrics-listen");
  };
  auto colon = text.rfind(':');
  if (colon == std::string::npos) throw bad("no port");
  std::string host = text.substr(0, colon), port_text = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  else if (host.find(':') != std::string::npos) throw bad("an IPv6 address needs brackets");
  if (host.empty()) host = "0.0.0.0";
  int port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || p != port_text.data() + port_text.size() || port < 1 || port > 65535)
    throw bad("the port must be a number from 1 to 65535");
  return {host, port};
}

}  // namespace bulwark::metrics
