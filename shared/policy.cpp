#include "shared/policy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <tuple>

#include "shared/process.h"

namespace bulwark::policy {
namespace {

// Limits from OpenShell's policy validation, so both accept and refuse the same files.
constexpr size_t kMaxFilesystemPaths = 256;
constexpr size_t kMaxPathLength = 4096;
constexpr uint64_t kMaxIdentity = 4294967294;  // 4294967295 is the "no id" sentinel
constexpr size_t kMaxMiddlewares = 10;
constexpr size_t kMaxSelectorPatterns = 32;
// Ours: bound the work and the error text a hostile or broken file can cause.
constexpr size_t kMaxPolicyBytes = 4 << 20;
constexpr size_t kMaxProblems = 100;
constexpr size_t kMaxConfigNodes = 10000;
// YAML aliases let a small file name the same subtree many times; count every value visited.
constexpr size_t kMaxValues = 100000;
constexpr int kMaxNesting = 32;

using Keys = std::initializer_list<std::string_view>;

std::string join_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

std::string index_path(const std::string& parent, size_t i) {
  return parent + "[" + std::to_string(i) + "]";
}

std::string quote(std::string_view s) {
  if (s.size() > 60) return "'" + std::string(s.substr(0, 57)) + "...'";
  return "'" + std::string(s) + "'";
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string joined(Keys keys, const char* sep = ", ") {
  std::string out;
  for (auto k : keys) {
    if (!out.empty()) out += sep;
    out += k;
  }
  return out;
}

bool one_of(std::string_view s, Keys values) {
  return std::find(values.begin(), values.end(), s) != values.end();
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

bool has_glob(std::string_view s) { return s.find_first_of("*?[") != std::string_view::npos; }

// A value with where it sits. yaml-cpp marks a null value at the token after it, so a null keeps
// the mark of its key instead.
struct Val {
  YAML::Node node;
  std::string path;
  YAML::Mark mark;
};

// Thrown when a policy expands past kMaxValues; parse_policy turns it into a problem.
struct TooManyValues {};

// The checked keys of one YAML map.
class Fields {
 public:
  explicit Fields(Val self) : self_(std::move(self)) {}
  // The value under key; nullopt when the key is absent or null (null means "not set").
  std::optional<Val> get(std::string_view key) const {
    for (const auto& [k, v] : entries_)
      if (k == key && !v.node.IsNull()) return v;
    return std::nullopt;
  }
  const Val& self() const { return self_; }
  void add(std::string key, Val v) { entries_.emplace_back(std::move(key), std::move(v)); }
  const std::vector<std::pair<std::string, Val>>& entries() const { return entries_; }

 private:
  Val self_;
  std::vector<std::pair<std::string, Val>> entries_;
};

const char* kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Null: return "nothing";
    default: return "a scalar";
  }
}

std::string got(const YAML::Node& n) {
  return n.IsScalar() ? "got " + quote(n.Scalar()) : std::string("got ") + kind(n);
}

bool plain(const YAML::Node& n) { return n.Tag() == "?"; }  // unquoted and untagged

bool is_decimal(std::string_view s) {
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) s.remove_prefix(1);
  return !s.empty() && s.size() <= 18 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// An IP network: an address and a prefix length.
struct Net {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};
  int bits = 0;
};

std::optional<Net> parse_net(const std::string& s) {
  auto slash = s.find('/');
  std::string addr = s.substr(0, slash);
  Net n;
  if (inet_pton(AF_INET, addr.c_str(), n.bytes.data()) == 1) {
    n.bits = 32;
  } else if (inet_pton(AF_INET6, addr.c_str(), n.bytes.data()) == 1) {
    n.v6 = true;
    n.bits = 128;
  } else {
    return std::nullopt;
  }
  if (slash != std::string::npos) {
    std::string p = s.substr(slash + 1);
    if (p.empty() || p.size() > 3 || !is_decimal(p) || p[0] == '+' || p[0] == '-') return std::nullopt;
    int bits = std::stoi(p);
    if (bits > n.bits) return std::nullopt;
    n.bits = bits;
  }
  return n;
}

bool overlaps(const Net& a, const Net& b) {
  if (a.v6 != b.v6) return false;
  int bits = std::min(a.bits, b.bits);
  for (int i = 0; i < bits; ++i) {
    int byte = i / 8, mask = 0x80 >> (i % 8);
    if ((a.bytes[byte] & mask) != (b.bytes[byte] & mask)) return false;
  }
  return true;
}

// Destinations no policy may open: the sandbox's own host and cloud metadata services.
const std::vector<std::pair<Net, const char*>>& forbidden_nets() {
  static const std::vector<std::pair<Net, const char*>> nets = [] {
    std::vector<std::pair<Net, const char*>> out;
    for (auto [cidr, what] : {std::pair{"127.0.0.0/8", "loopback"},
                              {"169.254.0.0/16", "link-local"},
                              {"0.0.0.0/32", "the unspecified address"},
                              {"::1/128", "loopback"},
                              {"fe80::/10", "link-local"},
                              {"::/128", "the unspecified address"},
                              {"::ffff:127.0.0.0/104", "loopback"},
                              {"::ffff:169.254.0.0/112", "link-local"},
                              {"::ffff:0.0.0.0/128", "the unspecified address"}})
      out.emplace_back(*parse_net(cidr), what);
    return out;
  }();
  return nets;
}

bool is_ip_literal(const std::string& s) {
  std::array<uint8_t, 16> buf{};
  return inet_pton(AF_INET, s.c_str(), buf.data()) == 1 || inet_pton(AF_INET6, s.c_str(), buf.data()) == 1;
}

const Keys kTopKeys = {"version", "filesystem_policy", "landlock", "process", "network_policies",
                           "network_middlewares"};
const Keys kEndpointKeys = {
    "host", "port", "ports", "path", "protocol", "tls", "enforcement", "access", "rules", "deny_rules",
    "allowed_ips", "allow_encoded_slash", "websocket_credential_rewrite", "request_body_credential_rewrite",
    "allow_uninspected_credentials", "credential_signing", "signing_service", "signing_region",
    "credential_binding", "persisted_queries", "graphql_persisted_queries", "graphql_max_body_bytes", "mcp",
    "json_rpc"};
const Keys kRuleKeys = {"method", "path", "query", "operation_type", "operation_name", "fields", "tool",
                            "params", "command"};
const Keys kProtocols = {"tcp", "rest", "websocket", "graphql", "sql", "json-rpc", "mcp"};

bool is_l7(const std::string& protocol) { return !protocol.empty() && protocol != "tcp"; }

// One parsed rule with the values it came from, for the checks that need the whole endpoint.
struct ParsedRule {
  Rule rule;
  Val at;
  Fields fields;
  bool empty = true;  // no field set: an allow clause that allows nothing
};

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  bool ok() const { return problems_.empty(); }

  // The problems in file order, at most kMaxProblems of them and a last line saying how many more.
  std::vector<Problem> take_problems() {
    std::stable_sort(problems_.begin(), problems_.end(), [](const Problem& a, const Problem& b) {
      return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    if (problems_.size() > kMaxProblems) {
      size_t more = problems_.size() - kMaxProblems + dropped_;
      problems_.resize(kMaxProblems + 1);
      Problem& last = problems_.back();
      last.path.clear();
      last.message = "... and " + std::to_string(more) + " more problems";
    }
    return std::move(problems_);
  }

  void problem(const YAML::Mark& m, const std::string& path, std::string message) {
    // Keep enough to sort and report; count the rest so the summary stays true.
    if (problems_.size() >= 10 * kMaxProblems) {
      ++dropped_;
      return;
    }
    // Marks are 0-based; an unknown mark (-1) still prints as a valid position.
    problems_.push_back(Problem{file_, std::max(m.line, 0) + 1, std::max(m.column, 0) + 1, path, std::move(message)});
  }
  void problem(const Val& v, std::string message) { problem(v.mark, v.path, std::move(message)); }

  Val child_val(const YAML::Node& node, std::string path, const YAML::Mark& fallback) {
    if (++values_ > kMaxValues) throw TooManyValues{};
    return Val{node, std::move(path), node.IsNull() ? fallback : node.Mark()};
  }

  Policy policy(const YAML::Node& root) {
    Policy p;
    Val top{root, "", root.Mark()};
    auto f = map(top, kTopKeys);
    if (!f) return p;
    if (auto v = f->get("version")) {
      if (!v->node.IsScalar() || !plain(v->node) || !is_decimal(v->node.Scalar()))
        problem(*v, "must be the integer 1, " + got(v->node));
      else if (std::stoll(v->node.Scalar()) != 1)
        problem(*v, "unsupported version " + v->node.Scalar() + ": must be 1");
    } else {
      problem(top.mark, "version", "required: start the policy with `version: 1`");
    }
    if (auto v = f->get("filesystem_policy")) {
      p.has_filesystem = true;
      filesystem(*v, p.filesystem);
    }
    if (auto v = f->get("landlock")) p.landlock = landlock(*v);
    if (auto v = f->get("process")) p.process = process(*v);
    if (auto v = f->get("network_policies")) p.network_policies = network_policies(*v);
    if (auto v = f->get("network_middlewares")) p.network_middlewares = middlewares(*v);
    return p;
  }

 private:
  // ---- shapes ----

  // v as a map whose keys are unique plain strings from `allowed`; nullopt (and a problem) otherwise.
  std::optional<Fields> map(const Val& v, Keys allowed) { return map_impl(v, allowed, true); }
  // v as a map with any keys (map keys that are names: network_policies, query, ...).
  std::optional<Fields> any_map(const Val& v) { return map_impl(v, {}, false); }

  std::optional<Fields> map_impl(const Val& v, Keys allowed, bool check_keys) {
    if (!v.node.IsMap()) {
      problem(v, "must be a map, " + got(v.node));
      return std::nullopt;
    }
    Fields f(v);
    std::map<std::string, int> seen;  // key -> its 1-based line
    for (auto it = v.node.begin(); it != v.node.end(); ++it) {
      const YAML::Node k = it->first;  // a copy: the iterator hands out a temporary pair
      if (!k.IsScalar() || k.Scalar().empty()) {
        problem(k.Mark(), v.path, "keys must be non-empty strings, " + got(k));
        continue;
      }
      std::string key = k.Scalar();
      std::string path = join_path(v.path, key);
      if (auto [pos, fresh] = seen.emplace(key, k.Mark().line + 1); !fresh) {
        problem(k.Mark(), path, "duplicate key (first at line " + std::to_string(pos->second) + ")");
        continue;
      }
      if (check_keys && !one_of(key, allowed)) {
        problem(k.Mark(), path, unknown_key_message(key, allowed));
        continue;
      }
      f.add(key, child_val(it->second, path, k.Mark()));
    }
    return f;
  }

  static std::string unknown_key_message(const std::string& key, Keys allowed) {
    std::string best;
    size_t best_d = 3;  // suggest only near misses: typos, not other fields
    for (auto a : key.size() <= 64 ? allowed : Keys{}) {  // long keys are no typo; and stay cheap
      size_t d = edit_distance(key, a);
      if (d < best_d) best_d = d, best = a;
    }
    std::string msg = "unknown key " + quote(key);
    if (!best.empty()) msg += " (did you mean '" + best + "'?)";
    return msg + "; allowed: " + joined(allowed);
  }

  std::optional<std::vector<Val>> list(const Val& v) {
    if (!v.node.IsSequence()) {
      problem(v, "must be a list, " + got(v.node));
      return std::nullopt;
    }
    std::vector<Val> out;
    size_t i = 0;
    for (auto it = v.node.begin(); it != v.node.end(); ++it, ++i)
      out.push_back(child_val(*it, index_path(v.path, i), v.mark));
    return out;
  }

  // Calls fn(item, text) for each string in the list under key; wrong types are problems already.
  template <class F>
  void each_string(const Fields& f, const char* key, F&& fn) {
    auto lv = f.get(key);
    if (!lv) return;
    auto items = list(*lv);
    if (!items) return;
    for (const auto& item : *items)
      if (auto s = string(item)) fn(item, *s);
  }

  std::optional<std::string> string(const Val& v) {
    if (!v.node.IsScalar()) {
      problem(v, "must be a string, " + got(v.node));
      return std::nullopt;
    }
    return v.node.Scalar();
  }

  std::vector<std::string> strings(const Val& v) {
    std::vector<std::string> out;
    if (auto items = list(v))
      for (const auto& item : *items)
        if (auto s = string(item)) out.push_back(*s);
    return out;
  }

  std::optional<bool> boolean(const Val& v) {
    if (v.node.IsScalar() && plain(v.node)) {
      const std::string& s = v.node.Scalar();
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
    }
    problem(v, "must be true or false, " + got(v.node));
    return std::nullopt;
  }

  std::optional<int64_t> integer(const Val& v, int64_t min, int64_t max) {
    if (v.node.IsScalar() && plain(v.node) && is_decimal(v.node.Scalar())) {
      int64_t n = std::stoll(v.node.Scalar());
      if (n >= min && n <= max) return n;
    }
    problem(v, "must be an integer from " + std::to_string(min) + " to " + std::to_string(max) + ", " + got(v.node));
    return std::nullopt;
  }

  // The string under key (empty when absent); checks its value against `allowed` when given.
  std::string text(const Fields& f, std::string_view key, Keys allowed = {}, bool fold_case = false) {
    auto v = f.get(key);
    if (!v) return {};
    auto s = string(*v);
    if (!s) return {};
    std::string value = fold_case ? lower(*s) : *s;
    if (allowed.size() && !value.empty() && !one_of(value, allowed))
      problem(*v, "must be one of " + joined(allowed) + "; got " + quote(*s));
    return value;
  }

  bool flag(const Fields& f, std::string_view key, bool dflt = false) {
    auto v = f.get(key);
    if (!v) return dflt;
    return boolean(*v).value_or(dflt);
  }

  void required(const Fields& f, std::string_view key, const std::string& message) {
    problem(f.self().mark, join_path(f.self().path, key), message);
  }

  // ---- filesystem, landlock, process ----

  // An absolute path with no `..` component. Globs are just characters here.
  void check_path(const Val& v, const std::string& s) {
    if (s.size() > kMaxPathLength) {
      problem(v, "is " + std::to_string(s.size()) + " characters long; at most " + std::to_string(kMaxPathLength));
      return;
    }
    if (s.find('\0') != std::string::npos) {
      problem(v, "must not contain a NUL character");
      return;
    }
    if (s.empty() || s[0] != '/') {
      problem(v, "must be an absolute path");
      return;
    }
    // `..` could climb out of the directory the author meant to grant.
    size_t start = 0;
    while (start <= s.size()) {
      size_t end = s.find('/', start);
      if (end == std::string::npos) end = s.size();
      if (s.compare(start, end - start, "..") == 0) {
        problem(v, "must not contain '..' components");
        return;
      }
      start = end + 1;
    }
  }

  void filesystem(const Val& v, FilesystemPolicy& fs) {
    auto f = map(v, {"include_workdir", "read_only", "read_write"});
    if (!f) return;
    fs.include_workdir = flag(*f, "include_workdir");
    for (auto [key, out] : {std::pair{"read_only", &fs.read_only}, {"read_write", &fs.read_write}}) {
      each_string(*f, key, [&, out = out](const Val& item, const std::string& s) {
        check_path(item, s);
        if (out == &fs.read_write && s.find_first_not_of('/') == std::string::npos && !s.empty())
          problem(item, "'/' is too broad to be writable: list the directories the agent must write");
        out->push_back(s);
      });
    }
    size_t total = fs.read_only.size() + fs.read_write.size();
    if (total > kMaxFilesystemPaths)
      problem(v, std::to_string(total) + " paths in read_only and read_write together; at most " +
                     std::to_string(kMaxFilesystemPaths));
  }

  LandlockCompatibility landlock(const Val& v) {
    auto f = map(v, {"compatibility"});
    if (f && text(*f, "compatibility", {"best_effort", "hard_requirement"}) == "hard_requirement")
      return LandlockCompatibility::kHardRequirement;
    return LandlockCompatibility::kBestEffort;
  }

  std::optional<std::string> identity(const Fields& f, std::string_view key) {
    auto v = f.get(key);
    if (!v) return std::nullopt;
    auto s = string(*v);
    if (!s || s->empty()) return std::nullopt;  // empty = omitted, as OpenShell reads it
    const std::string& id = *s;
    const std::string allowed = "use sandbox or a numeric id from 1 to 4294967294";
    bool numeric = std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (id == "sandbox") return id;
    if (id == "root" || (numeric && id.find_first_not_of('0') == std::string::npos)) {
      problem(*v, "root is not allowed: the agent must not run as root; " + allowed);
    } else if (!numeric) {
      problem(*v, "must be sandbox or a numeric id from 1 to 4294967294, got " + quote(id));
    } else {
      size_t digits = id.size() - std::min(id.find_first_not_of('0'), id.size());
      if (digits > 10 || std::stoull(id) > kMaxIdentity)
        problem(*v, "must be at most 4294967294 (4294967295 means no id), got " + quote(id));
      else
        return id;
    }
    return std::nullopt;
  }

  ProcessPolicy process(const Val& v) {
    ProcessPolicy p;
    if (auto f = map(v, {"run_as_user", "run_as_group"})) {
      p.run_as_user = identity(*f, "run_as_user");
      p.run_as_group = identity(*f, "run_as_group");
    }
    return p;
  }

  // ---- network policies ----

  std::vector<NetworkPolicy> network_policies(const Val& v) {
    std::vector<NetworkPolicy> out;
    auto entries = any_map(v);
    if (!entries) return out;
    for (const auto& [key, ev] : entries->entries()) {
      NetworkPolicy np;
      np.key = key;
      np.name = key;
      auto f = ev.node.IsNull() ? std::nullopt : map(ev, {"name", "endpoints", "binaries"});
      if (ev.node.IsNull()) problem(ev, "must be a map with endpoints and binaries");
      if (!f) continue;
      if (std::string name = text(*f, "name"); !name.empty()) np.name = name;

      if (auto ep = f->get("endpoints")) {
        if (auto items = list(*ep)) {
          if (items->empty()) problem(*ep, "must list at least one endpoint");
          for (const auto& item : *items) np.endpoints.push_back(endpoint(item));
        }
      } else {
        required(*f, "endpoints", "required: the hosts and ports this entry opens");
      }

      if (auto bv = f->get("binaries")) {
        if (auto items = list(*bv)) {
          if (items->empty()) problem(*bv, "must list at least one binary");
          for (const auto& item : *items) {
            auto bf = map(item, {"path", "harness"});
            if (!bf) continue;
            flag(*bf, "harness");  // deprecated in OpenShell and ignored; still type-checked
            if (auto pv = bf->get("path")) {
              if (auto s = string(*pv)) {
                check_path(*pv, *s);
                np.binaries.push_back(Binary{*s});
              }
            } else {
              required(*bf, "path", "required: the executable's absolute path (globs * and ** allowed)");
            }
          }
        }
      } else {
        required(*f, "binaries", "required: the executables allowed to use these endpoints");
      }
      out.push_back(std::move(np));
    }
    return out;
  }

  void check_host(const Val& v, const std::string& host, bool tcp) {
    if (host.size() > 253) {
      problem(v, "is " + std::to_string(host.size()) + " characters long; a host name has at most 253");
      return;
    }
    if (host.find_first_of("/@ \t") != std::string::npos) {
      problem(v, "must be a bare host name or IP address, without scheme, port or path; got " + quote(host));
      return;
    }
    if (is_ip_literal(host)) {
      if (tcp) problem(v, "protocol tcp needs a DNS host name, not an IP address");
      return;
    }
    if (host.find(':') != std::string::npos) {
      problem(v, "must be a bare host name or IP address, without scheme, port or path; got " + quote(host));
      return;
    }
    if (host == "*" || host == "**") {
      problem(v, "a bare wildcard would allow every host: name the hosts, e.g. *.example.com");
      return;
    }
    std::string name = host;
    if (!name.empty() && name.back() == '.') {
      if (tcp) {
        problem(v, "protocol tcp needs a host name without a trailing '.'");
        return;
      }
      name.pop_back();
    }
    std::vector<std::string> labels;
    for (size_t start = 0;;) {
      size_t dot = name.find('.', start);
      labels.push_back(name.substr(start, dot - start));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    for (size_t i = 0; i < labels.size(); ++i) {
      const std::string& l = labels[i];
      if (l.empty() || l.size() > 63) {
        problem(v, "has an empty or over-long (63+) label: " + quote(host));
        return;
      }
      for (char c : l) {
        bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || (c == '*' && i == 0);
        if (c == '*' && i > 0) {
          problem(v, "a wildcard is allowed only in the first label (e.g. *.example.com), got " + quote(host));
          return;
        }
        if (!ok) {
          problem(v, "has an invalid character " + quote(std::string(1, c)) + ": " + quote(host));
          return;
        }
      }
    }
    const std::string& first = labels[0];
    if (first.find('*') == std::string::npos) return;
    if (first.find("**") != std::string::npos && first != "**") {
      problem(v, "'**' must be the whole first label (e.g. **.example.com), got " + quote(host));
    } else if (labels.size() <= 2) {
      // *.com, or foo*.com: anyone can register a name that matches.
      problem(v, "a wildcard over a top-level domain is too broad: use e.g. *.example.com, got " + quote(host));
    }
  }

  void check_allowed_ip(const Val& v, const std::string& s) {
    auto net = parse_net(s);
    if (!net) {
      problem(v, "must be an IP address or CIDR (e.g. 10.0.0.0/8), got " + quote(s));
      return;
    }
    for (const auto& [bad, what] : forbidden_nets()) {
      if (overlaps(*net, bad)) {
        problem(v, quote(s) + " overlaps " + what + ", which no policy may open");
        return;
      }
    }
  }

  // A matcher: a glob string or {any: [globs]}.
  Globs matcher(const Val& v) {
    if (v.node.IsScalar()) return {v.node.Scalar()};
    if (v.node.IsMap()) {
      auto f = map(v, {"any"});
      if (!f) return {};
      if (auto av = f->get("any")) {
        Globs g = strings(*av);
        if (g.empty() && av->node.IsSequence()) problem(*av, "must list at least one glob");
        return g;
      }
      required(*f, "any", "required: a list of globs");
      return {};
    }
    problem(v, "must be a glob string or {any: [globs]}, " + got(v.node));
    return {};
  }

  // MCP params: matchers, possibly nested in maps, flattened to dot paths as OpenShell does.
  void params(const Val& v, const std::string& prefix, std::map<std::string, Globs>& out, int depth) {
    auto f = any_map(v);
    if (!f) return;
    for (const auto& [key, pv] : f->entries()) {
      std::string flat = prefix.empty() ? key : prefix + "." + key;
      bool nested = pv.node.IsMap() && !(pv.node.size() == 1 && pv.node["any"]);
      if (nested && depth < kMaxNesting)
        params(pv, flat, out, depth + 1);
      else if (nested)
        problem(pv, "is nested too deeply");
      else
        out[flat] = matcher(pv);
    }
  }

  ParsedRule rule(const Val& v) {
    ParsedRule r{Rule{}, v, Fields(v), true};
    auto f = map(v, kRuleKeys);
    if (!f) {
      r.empty = false;  // reported already; not also "would deny all"
      return r;
    }
    r.fields = *f;
    r.rule.method = text(*f, "method");
    r.rule.path = text(*f, "path");
    r.rule.command = text(*f, "command");
    r.rule.operation_type = text(*f, "operation_type");
    r.rule.operation_name = text(*f, "operation_name");
    if (auto q = f->get("query"))
      if (auto qf = any_map(*q))
        for (const auto& [key, mv] : qf->entries()) r.rule.query[key] = matcher(mv);
    if (auto fv = f->get("fields")) r.rule.fields = strings(*fv);
    if (auto pv = f->get("params")) params(*pv, "", r.rule.params, 0);
    if (auto tv = f->get("tool")) {
      if (f->get("params") && r.rule.params.count("name"))
        problem(*tv, "set tool or params.name, not both");
      else
        r.rule.params["name"] = matcher(*tv);
    }
    for (const auto& [key, fv] : f->entries())
      if (!fv.node.IsNull()) r.empty = false;
    return r;
  }

  // The fields a rule of this protocol may use, and what it must set.
  void check_rule(const ParsedRule& r, const std::string& protocol, const McpOptions& mcp) {
    const Fields& f = r.fields;
    const Rule& rule = r.rule;
    auto has = [&](std::string_view k) { return f.get(k).has_value(); };
    auto reject_others = [&](Keys allowed) {
      for (const auto& [key, v] : f.entries())
        if (!v.node.IsNull() && !one_of(key, allowed))
          problem(v, "does not apply to protocol " + protocol + " rules (they use " + joined(allowed) + ")");
    };
    auto need = [&](std::string_view key, const std::string& why) {
      if (!has(key)) required(f, key, "required: " + why);
    };
    bool rest_shape = has("method") || has("path") || has("query");
    bool graphql_shape = has("operation_type") || has("operation_name") || has("fields");
    auto check_operation_type = [&] {
      need("operation_type", "query, mutation, subscription or *");
      if (auto v = f.get("operation_type"); v && !one_of(rule.operation_type, {"query", "mutation", "subscription", "*"}))
        problem(*v, "must be one of query, mutation, subscription, *; got " + quote(rule.operation_type));
    };
    auto check_method_token = [&] {
      auto v = f.get("method");
      if (!v) return;
      const std::string& m = rule.method;
      bool token = !m.empty() && std::all_of(m.begin(), m.end(), [](char c) {
        return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == '-';
      });
      if (m != "*" && !token) problem(*v, "must be an HTTP method such as GET or POST, or *; got " + quote(m));
    };

    if (protocol == "rest") {
      reject_others({"method", "path", "query"});
      need("method", "an HTTP method such as GET, or *");
      need("path", "a URL path glob such as /repos/** (** matches any path)");
      check_method_token();
    } else if (protocol == "websocket") {
      if (rest_shape && graphql_shape) {
        problem(r.at, "do not combine method/path/query with operation_type/operation_name/fields in one rule");
        return;
      }
      if (graphql_shape) {
        reject_others({"operation_type", "operation_name", "fields"});
        check_operation_type();
        return;
      }
      reject_others({"method", "path", "query"});
      need("method", "GET (the upgrade), WEBSOCKET_TEXT (client text messages) or *");
      need("path", "the upgrade request's URL path glob");
      if (auto v = f.get("method"); v && !one_of(rule.method, {"GET", "WEBSOCKET_TEXT", "*"}))
        problem(*v, "must be one of GET, WEBSOCKET_TEXT, *; got " + quote(rule.method));
    } else if (protocol == "graphql") {
      reject_others({"operation_type", "operation_name", "fields"});
      check_operation_type();
    } else if (protocol == "json-rpc") {
      reject_others({"method"});
      need("method", "a JSON-RPC method name, or * for all");
      if (auto v = f.get("method"); v && rule.method != "*" && has_glob(rule.method))
        problem(*v, "must be an exact JSON-RPC method name, or * alone for all; got " + quote(rule.method));
    } else if (protocol == "mcp") {
      reject_others({"method", "tool", "params"});
      auto mv = f.get("method");
      if (!mv && !mcp.allow_all_known_mcp_methods)
        required(f, "method", "required unless mcp.allow_all_known_mcp_methods is true");
      if (mv && rule.method == "*")
        problem(*mv, "'*' is not an MCP method: name the methods, or omit method and set "
                     "mcp.allow_all_known_mcp_methods: true");
      else if (mv && has_glob(rule.method) && rule.method.rfind("tools/", 0) != 0)
        problem(*mv, "globs are allowed only for the tools/ methods (e.g. tools/*), got " + quote(rule.method));
      bool tool_rule = has("tool") || has("params");
      if (tool_rule && mv && rule.method != "tools/call")
        problem(*mv, "tool and params select tools/call requests: set method: tools/call");
      for (const auto& [key, globs] : rule.params) {
        if (key != "name") {
          problem(*f.get("params"), "only params.name (the tool name) can be matched today, not params." + key);
          continue;
        }
        bool wildcard = std::any_of(globs.begin(), globs.end(), [](const std::string& g) { return has_glob(g); });
        if (wildcard && !mcp.strict_tool_names)
          problem(*(f.get("tool") ? f.get("tool") : f.get("params")),
                  "wildcard tool matchers need mcp.strict_tool_names to stay true");
      }
    }
    // sql, and rules on an endpoint without protocol, are accepted as written: not enforced yet.
  }

  // A rule that covers every tools/call (no tool selector) bypasses or erases tool-specific rules.
  static bool covers_all_tools(const ParsedRule& r, const McpOptions& mcp) {
    if (r.rule.params.count("name")) return false;
    const std::string& m = r.rule.method;
    if (m.empty()) return mcp.allow_all_known_mcp_methods;  // the profile includes tools/call
    return fnmatch(m.c_str(), "tools/call", 0) == 0;
  }

  Endpoint endpoint(const Val& v) {
    Endpoint e;
    auto fo = map(v, kEndpointKeys);
    if (!fo) return e;
    const Fields& f = *fo;

    e.protocol = text(f, "protocol", kProtocols, /*fold_case=*/true);
    bool known_protocol = e.protocol.empty() || one_of(e.protocol, kProtocols);
    const bool tcp = e.protocol == "tcp";
    e.host = text(f, "host");
    e.path = text(f, "path");
    e.tls = text(f, "tls", {"skip", "terminate", "passthrough"});
    e.enforcement = text(f, "enforcement", {"enforce", "audit"});
    e.access = text(f, "access", {"read-only", "read-write", "full"});
    e.allow_encoded_slash = flag(f, "allow_encoded_slash");
    e.websocket_credential_rewrite = flag(f, "websocket_credential_rewrite");
    e.request_body_credential_rewrite = flag(f, "request_body_credential_rewrite");
    e.allow_uninspected_credentials = flag(f, "allow_uninspected_credentials");
    e.credential_signing = text(f, "credential_signing", {"sigv4", "sigv4:body", "sigv4:no_body"});
    e.signing_service = text(f, "signing_service");
    e.signing_region = text(f, "signing_region");
    e.persisted_queries = text(f, "persisted_queries", {"deny", "allow_registered"});

    // Ports: `port` or `ports`, each 1..65535.
    auto port_v = f.get("port");
    auto ports_v = f.get("ports");
    if (port_v && ports_v) {
      problem(*ports_v, "port and ports are mutually exclusive: list every port under ports");
    } else if (port_v) {
      if (auto n = integer(*port_v, 1, 65535)) e.ports.push_back(static_cast<uint16_t>(*n));
    } else if (ports_v) {
      if (auto items = list(*ports_v)) {
        if (items->empty()) problem(*ports_v, "must list at least one port");
        for (const auto& item : *items)
          if (auto n = integer(item, 1, 65535);
              n && std::find(e.ports.begin(), e.ports.end(), *n) == e.ports.end())
            e.ports.push_back(static_cast<uint16_t>(*n));
      }
    } else {
      required(f, "port", "required: the TCP port (or a list under ports)");
    }

    if (auto av = f.get("allowed_ips"))
      if (auto items = list(*av))
        for (const auto& item : *items)
          if (auto s = string(item)) {
            check_allowed_ip(item, *s);
            e.allowed_ips.push_back(*s);
          }

    if (auto hv = f.get("host"); hv && !e.host.empty()) {
      check_host(*hv, e.host, tcp);
    } else if (tcp || e.protocol == "mcp") {
      required(f, "host", "required with protocol " + e.protocol + ": a DNS host name");
    } else if (e.allowed_ips.empty()) {
      required(f, "host", "required (only an endpoint with allowed_ips may omit it)");
    }

    if (auto cv = f.get("credential_binding")) {
      if (auto cf = map(*cv, {"provider"})) {
        e.credential_binding_provider = text(*cf, "provider");
        if (e.credential_binding_provider.empty())
          required(*cf, "provider", "required: the name of a provider attached to the sandbox");
      }
    }

    if (auto gv = f.get("graphql_max_body_bytes"))
      e.graphql_max_body_bytes = static_cast<uint32_t>(integer(*gv, 1, UINT32_MAX).value_or(0));
    if (auto gv = f.get("graphql_persisted_queries")) {
      if (auto gf = any_map(*gv)) {
        for (const auto& [key, ov] : gf->entries()) {
          auto of = map(ov, {"operation_type", "operation_name", "fields"});
          if (!of) continue;
          GraphqlOperation op;
          op.operation_type = text(*of, "operation_type", {"query", "mutation", "subscription"});
          op.operation_name = text(*of, "operation_name");
          if (auto fv = of->get("fields")) op.fields = strings(*fv);
          if (op.operation_type.empty()) required(*of, "operation_type", "required: query, mutation or subscription");
          e.graphql_persisted_queries[key] = std::move(op);
        }
      }
    }
    if (e.persisted_queries == "allow_registered" && e.graphql_persisted_queries.empty())
      problem(*f.get("persisted_queries"), "allow_registered needs graphql_persisted_queries to list the queries");

    if (auto jv = f.get("json_rpc"))
      if (auto jf = map(*jv, {"max_body_bytes"}))
        if (auto bv = jf->get("max_body_bytes"))
          e.json_rpc_max_body_bytes = static_cast<uint32_t>(integer(*bv, 1, UINT32_MAX).value_or(0));
    if (auto mv = f.get("mcp")) {
      if (auto mf = map(*mv, {"max_body_bytes", "strict_tool_names", "allow_all_known_mcp_methods"})) {
        // The MCP stanza's limit wins over json_rpc's, as in OpenShell.
        if (auto bv = mf->get("max_body_bytes"))
          e.json_rpc_max_body_bytes = static_cast<uint32_t>(integer(*bv, 1, UINT32_MAX).value_or(0));
        e.mcp.strict_tool_names = flag(*mf, "strict_tool_names", true);
        e.mcp.allow_all_known_mcp_methods = flag(*mf, "allow_all_known_mcp_methods");
      }
    }

    // Rules.
    std::vector<ParsedRule> allows, denies;
    auto rules_v = f.get("rules");
    if (rules_v) {
      if (auto items = list(*rules_v)) {
        if (items->empty()) problem(*rules_v, "an empty list allows nothing: use access: full, or remove rules");
        for (const auto& item : *items) {
          auto rf = map(item, {"allow"});
          if (!rf) continue;
          if (auto av = rf->get("allow")) {
            allows.push_back(rule(*av));
          } else {
            ParsedRule empty{Rule{}, Val{item.node, join_path(item.path, "allow"), item.mark}, Fields(item), true};
            allows.push_back(std::move(empty));
          }
        }
      }
    }
    auto deny_v = f.get("deny_rules");
    if (deny_v) {
      if (auto items = list(*deny_v)) {
        if (items->empty()) problem(*deny_v, "an empty list denies nothing: remove deny_rules");
        for (const auto& item : *items) denies.push_back(rule(item));
      }
    }
    const bool has_rules = !allows.empty();
    const bool has_denies = !denies.empty();
    auto access_v = f.get("access");

    if (known_protocol) {
      for (const auto& r : allows)
        if (!r.empty) check_rule(r, e.protocol, e.mcp);
      for (const auto& r : denies) {
        if (r.empty)
          problem(r.at, "an empty deny rule: say what it denies");
        else
          check_rule(r, e.protocol, e.mcp);
      }
    }

    const bool mcp = e.protocol == "mcp", json_rpc = e.protocol == "json-rpc";
    const bool allow_all_mcp = mcp && e.mcp.allow_all_known_mcp_methods;
    if (tcp) {
      // TCP is not inspected: an L7 field would be silently ignored, so refuse it.
      for (std::string_view key : {"path", "enforcement", "access", "rules", "deny_rules",
                                   "websocket_credential_rewrite", "request_body_credential_rewrite",
                                   "allow_encoded_slash", "credential_signing", "signing_service", "signing_region",
                                   "persisted_queries", "graphql_persisted_queries", "graphql_max_body_bytes",
                                   "json_rpc", "mcp"}) {
        auto kv = f.get(key);
        if (kv && !(kv->node.IsScalar() && plain(kv->node) && (kv->node.Scalar() == "false")))
          problem(*kv, "does not apply to protocol tcp, which is not inspected: remove it");
      }
    } else if (known_protocol) {
      if (has_rules && access_v)
        problem(*access_v, "access and rules are mutually exclusive: keep one");
      if ((mcp || json_rpc) && access_v)
        problem(*access_v, mcp ? "protocol mcp takes no access preset: use rules, or set "
                                 "mcp.allow_all_known_mcp_methods: true to allow every MCP method"
                               : "protocol json-rpc takes no access preset: use rules with allow.method (\"*\" allows all)");
      if (json_rpc && !rules_v && !access_v)
        required(f, "rules", "required with protocol json-rpc: rules with allow.method");
      if (mcp && !rules_v && !access_v && !e.mcp.allow_all_known_mcp_methods)
        required(f, "rules", "required with protocol mcp unless mcp.allow_all_known_mcp_methods is true");
      if (one_of(e.protocol, {"rest", "websocket", "graphql", "sql"}) && !rules_v && !access_v)
        problem(v, "protocol " + e.protocol + " needs access or rules to say what is allowed");
      if (has_rules && !allow_all_mcp &&
          std::all_of(allows.begin(), allows.end(), [](const ParsedRule& r) { return r.empty; }))
        problem(*rules_v, "no rule has an allow clause, so these rules deny everything: use access: full or fill "
                          "in the allow clauses");
      if (has_denies && !is_l7(e.protocol))
        problem(*deny_v, "deny_rules need a protocol (rest, websocket, graphql, sql, json-rpc or mcp) so requests "
                         "are inspected");
      else if (has_denies && !mcp && !has_rules && !access_v)
        problem(*deny_v, "deny_rules need rules or access to define what is allowed first");
      if (mcp) {
        bool tool_specific = std::any_of(allows.begin(), allows.end(),
                                         [](const ParsedRule& r) { return r.rule.params.count("name") > 0; });
        if (tool_specific) {
          for (const auto* rules : {&allows, &denies})
            for (const auto& r : *rules)
              if (!r.empty && covers_all_tools(r, e.mcp))
                problem(r.at, "this rule covers every tools/call and would override the tool-specific rules: add "
                              "tool, or remove the tool-specific rules");
        }
      }
      // Options of one protocol on another would be silently ignored.
      bool graphql_like = e.protocol == "graphql" || e.protocol == "websocket";
      for (std::string_view key : {"persisted_queries", "graphql_persisted_queries", "graphql_max_body_bytes"})
        if (auto kv = f.get(key); kv && !graphql_like)
          problem(*kv, "applies only to protocol graphql or websocket");
      if (auto kv = f.get("mcp"); kv && !mcp) problem(*kv, "applies only to protocol mcp");
      if (auto kv = f.get("json_rpc"); kv && !mcp && !json_rpc) problem(*kv, "applies only to protocol json-rpc");
    }

    if (!e.credential_signing.empty()) {
      if (e.signing_service.empty())
        required(f, "signing_service", "required with credential_signing: the AWS service, e.g. bedrock");
      if (e.request_body_credential_rewrite)
        problem(*f.get("request_body_credential_rewrite"), "mutually exclusive with credential_signing");
    }

    for (auto& r : allows)
      if (!r.empty) e.rules.push_back(std::move(r.rule));
    for (auto& r : denies) e.deny_rules.push_back(std::move(r.rule));
    return e;
  }

  // ---- network middlewares ----

  // YAML to JSON for an implementation-owned config, bounded so aliases cannot blow it up.
  bool to_json(const YAML::Node& n, nlohmann::json& out, int depth, size_t& budget) {
    if (budget-- == 0 || depth > kMaxNesting) return false;
    switch (n.Type()) {
      case YAML::NodeType::Map:
        out = nlohmann::json::object();
        for (auto it = n.begin(); it != n.end(); ++it) {
          if (!it->first.IsScalar()) return false;
          if (!to_json(it->second, out[it->first.Scalar()], depth + 1, budget)) return false;
        }
        return true;
      case YAML::NodeType::Sequence:
        out = nlohmann::json::array();
        for (auto it = n.begin(); it != n.end(); ++it) {
          out.push_back(nullptr);
          if (!to_json(*it, out.back(), depth + 1, budget)) return false;
        }
        return true;
      case YAML::NodeType::Scalar: {
        const std::string& s = n.Scalar();
        if (!plain(n)) out = s;
        else if (s == "true" || s == "True" || s == "TRUE") out = true;
        else if (s == "false" || s == "False" || s == "FALSE") out = false;
        else if (s == "null" || s == "~") out = nullptr;
        else if (is_decimal(s)) out = std::stoll(s);
        else out = s;
        return true;
      }
      default:
        out = nullptr;
        return true;
    }
  }

  std::vector<Middleware> middlewares(const Val& v) {
    std::vector<Middleware> out;
    auto entries = any_map(v);
    if (!entries) return out;
    if (entries->entries().size() > kMaxMiddlewares)
      problem(v, std::to_string(entries->entries().size()) + " middleware configs; at most " +
                     std::to_string(kMaxMiddlewares));
    std::map<int32_t, std::string> orders;  // order -> the config that has it
    for (const auto& [key, mv] : entries->entries()) {
      auto f = mv.node.IsNull() ? std::nullopt : map(mv, {"name", "middleware", "order", "config", "on_error", "endpoints"});
      if (mv.node.IsNull()) problem(mv, "must be a map with middleware and endpoints");
      if (!f) continue;
      Middleware m;
      m.key = key;
      m.name = text(*f, "name");
      if (m.name.empty()) m.name = key;
      m.middleware = text(*f, "middleware");
      if (m.middleware.empty()) required(*f, "middleware", "required: the middleware's registered name");
      if (auto ov = f->get("order")) m.order = static_cast<int32_t>(integer(*ov, INT32_MIN, INT32_MAX).value_or(0));
      if (auto [pos, fresh] = orders.emplace(m.order, key); !fresh) {
        auto ov = f->get("order");
        problem(ov ? ov->mark : mv.mark, ov ? ov->path : join_path(mv.path, "order"),
                "order " + std::to_string(m.order) + " is already used by " + quote(pos->second) +
                    ": orders must be unique");
      }
      if (std::string e = text(*f, "on_error", {"fail_closed", "fail_open"}); !e.empty()) m.on_error = e;
      if (auto cv = f->get("config")) {
        if (!cv->node.IsMap()) {
          problem(*cv, "must be a map, " + got(cv->node));
        } else {
          nlohmann::json j;
          size_t budget = kMaxConfigNodes;
          if (to_json(cv->node, j, 0, budget))
            m.config_json = j.dump();
          else
            problem(*cv, "is too large, too deeply nested, or has non-string keys");
        }
      }
      if (auto ev = f->get("endpoints")) {
        if (auto ef = map(*ev, {"include", "exclude"})) {
          for (auto [key2, dest] : {std::pair{"include", &m.include}, {"exclude", &m.exclude}}) {
            each_string(*ef, key2, [&, dest = dest](const Val& item, const std::string& s) {
              if (s.empty() || s.find_first_of(" \t/") != std::string::npos)
                problem(item, "must be a host name or DNS glob, got " + quote(s));
              else if (s.find_first_of("{}") != std::string::npos)
                problem(item, "brace alternates are not supported: list each pattern");
              dest->push_back(s);
            });
          }
          if (m.include.empty()) required(*ef, "include", "required: at least one host pattern");
          if (m.include.size() + m.exclude.size() > kMaxSelectorPatterns)
            problem(*ev, std::to_string(m.include.size() + m.exclude.size()) + " patterns; at most " +
                             std::to_string(kMaxSelectorPatterns));
        }
      } else {
        required(*f, "endpoints", "required: {include: [host patterns]}");
      }
      out.push_back(std::move(m));
    }
    return out;
  }

  std::string file_;
  std::vector<Problem> problems_;
  size_t dropped_ = 0;
  size_t values_ = 0;
};

std::string join_problems(const std::vector<Problem>& problems) {
  std::string out;
  for (const auto& p : problems) {
    if (!out.empty()) out += "\n";
    out += p.to_string();
  }
  return out;
}

}  // namespace

std::string Problem::to_string() const {
  std::string out = file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  if (!path.empty()) out += path + ": ";
  return out + message;
}

PolicyInvalid::PolicyInvalid(std::vector<Problem> ps)
    : Error(Code::kInvalidArgument, join_problems(ps), ps.empty() ? std::string() : ps.front().path),
      problems(std::move(ps)) {}

Policy parse_policy(const std::string& yaml_text, const std::string& filename) {
  Reader r(filename);
  if (yaml_text.size() > kMaxPolicyBytes) {
    r.problem(YAML::Mark(), "", "the policy is " + std::to_string(yaml_text.size()) + " bytes; at most " +
                                    std::to_string(kMaxPolicyBytes));
    throw PolicyInvalid(r.take_problems());
  }
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(yaml_text);
  } catch (const YAML::DeepRecursion& e) {
    r.problem(e.mark, "", "invalid YAML: nested too deeply");  // yaml-cpp 0.7's own text here is "bad file"
    throw PolicyInvalid(r.take_problems());
  } catch (const YAML::Exception& e) {
    r.problem(e.mark, "", "invalid YAML: " + e.msg);
    throw PolicyInvalid(r.take_problems());
  }
  if (docs.empty() || docs[0].IsNull()) {
    r.problem(YAML::Mark(), "version", "required: the policy is empty; start it with `version: 1`");
    throw PolicyInvalid(r.take_problems());
  }
  if (docs.size() > 1)
    r.problem(docs[1].Mark(), "", "a policy file holds one YAML document; this one has " +
                                      std::to_string(docs.size()));
  Policy p;
  try {
    p = r.policy(docs[0]);
  } catch (const TooManyValues&) {
    r.problem(YAML::Mark(), "", "the policy has more than " + std::to_string(kMaxValues) +
                                    " values (counting each use of an alias); simplify it");
  }
  if (!r.ok()) throw PolicyInvalid(r.take_problems());
  return p;
}

Policy load_policy_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw Error(Code::kInvalidArgument, "cannot read the policy file: " + errno_text("open(" + path + ")", errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    throw Error(Code::kInvalidArgument, "cannot read the policy file: " + errno_text("fstat(" + path + ")", errno));
  if (!S_ISREG(st.st_mode))
    throw Error(Code::kInvalidArgument, "cannot read the policy file " + path + ": not a regular file");
  std::string text;
  char buf[65536];
  // Read one byte past the limit so parse_policy reports the size instead of us buffering it all.
  while (text.size() <= kMaxPolicyBytes) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(Code::kInvalidArgument, "cannot read the policy file: " + errno_text("read(" + path + ")", errno));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return parse_policy(text, path);
}

std::vector<std::string> changed_static_sections(const Policy& live, const Policy& next) {
  auto paths = [](const std::vector<std::string>& v) { return std::set<std::string>(v.begin(), v.end()); };
  std::vector<std::string> out;
  const auto &a = live.filesystem, &b = next.filesystem;
  if (live.has_filesystem != next.has_filesystem || a.include_workdir != b.include_workdir ||
      paths(a.read_only) != paths(b.read_only) || paths(a.read_write) != paths(b.read_write))
    out.push_back("filesystem_policy");
  if (live.landlock != next.landlock) out.push_back("landlock");
  if (live.process.run_as_user != next.process.run_as_user || live.process.run_as_group != next.process.run_as_group)
    out.push_back("process");
  return out;
}

}  // namespace bulwark::policy
