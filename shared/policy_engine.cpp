#include "shared/policy_engine.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <bit>
#include <functional>
#include <unordered_map>

#include "shared/error.h"

namespace bulwark::policy {
namespace {

constexpr size_t kMaxPathBytes = 4096;  // OpenShell's bound on a request path
constexpr char kEncodedSlash = '\x01';  // %2F kept inside a segment; raw 0x01 is refused anyway

char lower_char(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
char upper_char(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower_char(c);
  return out;
}

// 'text' for a message: at most 80 characters, control and non-ASCII bytes shown as '?'.
std::string quote(std::string_view s) {
  std::string out = "'";
  for (char c : s.substr(0, s.size() > 80 ? 77 : 80))
    out += static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f ? '?' : c;
  return out + (s.size() > 80 ? "...'" : "'");
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Characters a canonical path segment carries as themselves (RFC 3986 pchar minus ';', which
// has been cut off); everything else is %HH.
constexpr std::array<bool, 256> kPlainPathChar = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  for (char c : std::string_view("-._~!$&'()*+,=:@")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();
bool plain_path_char(unsigned char c) { return kPlainPathChar[c]; }

// Already canonical (the common case): plain characters only, no "//", no "." or ".." segment.
bool already_canonical(std::string_view raw) {
  for (size_t i = 1, start = 1; i <= raw.size(); ++i) {
    if (i == raw.size() || raw[i] == '/') {
      std::string_view seg = raw.substr(start, i - start);
      if ((seg.empty() && i != raw.size()) || seg == "." || seg == "..") return false;
      start = i + 1;
    } else if (!plain_path_char(static_cast<unsigned char>(raw[i]))) {
      return false;
    }
  }
  return true;
}

bool ieq_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (lower_char(s[i]) != prefix[i]) return false;
  return true;
}

// A host pattern: exact (lowercased, no trailing dot) or a wildcard first label + suffix.
struct HostPattern {
  bool wildcard = false, multi = false;  // multi: the first label is exactly "**"
  std::string exact, suffix;             // suffix starts with '.'
  Glob first;

  explicit HostPattern(std::string_view pattern) {
    exact = lower(pattern);
    if (!exact.empty() && exact.back() == '.') exact.pop_back();
    if (exact.find('*') == std::string::npos) return;
    wildcard = true;
    size_t dot = exact.find('.');
    if (dot == std::string::npos) return;  // a bare wildcard: validation refuses it; matches nothing
    suffix = exact.substr(dot);
    multi = exact.compare(0, dot, "**") == 0;
    first = Glob(std::string_view(exact).substr(0, dot), '.');
  }
  // host: lowercased, trailing dot removed.
  bool match(std::string_view host) const {
    if (!wildcard) return host == exact;
    if (suffix.empty() || host.size() <= suffix.size() || !host.ends_with(suffix)) return false;
    std::string_view head = host.substr(0, host.size() - suffix.size());
    return multi || first.match(head);
  }
};

enum class Preset : uint8_t { kNone, kReadOnly, kReadWrite, kFull };

struct CRule {
  std::string id;    // network_policies.<key>.endpoints[<i>].rules[<j>]
  std::string desc;  // "GET /repos/**", for reasons
  std::string method;  // uppercased; "*" = any; empty = not judged on method/path (graphql, ...)
  bool any_path = true;
  Glob path;
  std::vector<std::pair<std::string, std::vector<Glob>>> query;
};

struct CEndpoint {
  uint32_t policy = 0;
  std::string id;
  bool exact_host = false, hostless = false;
  std::vector<uint16_t> ports;
  L7Protocol protocol = L7Protocol::kNone;  // kRest for an unprotocolled endpoint with rules
  bool inspect = false, audit = false, allow_encoded_slash = false;
  bool body = false;  // graphql/sql/json-rpc/mcp: rules are judged on the body
  bool body_messages = false;  // websocket with GraphQL operation rules: text messages need the body
  bool has_query_rules = false;
  bool has_selector = false;
  Glob selector;
  Preset preset = Preset::kNone;
  std::string preset_id, preset_desc, refuses;  // refuses: what a not-permitted reason says
  std::vector<CRule> rules, deny_rules;
  std::vector<std::string> allowed_ips;
};

struct CBinary {
  std::string path;
  bool is_glob = false;  // OpenShell globs a binary path only when it has a '*'
  Glob glob;
  bool match(const std::string& exe) const { return is_glob ? glob.match(exe) : exe == path; }
};

struct CPolicy {
  std::string key, listing;  // listing: "/usr/bin/curl, /usr/bin/gh" for reasons
  std::vector<CBinary> binaries;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace

struct CompiledPolicy::Data {
  std::vector<CPolicy> policies;
  std::vector<CEndpoint> endpoints;  // file order; ids index this
  std::unordered_map<std::string, std::vector<uint32_t>, StringHash, std::equal_to<>> exact;
  std::vector<std::pair<HostPattern, uint32_t>> wildcards;
  std::vector<uint32_t> hostless;  // allowed_ips without host: any host on their ports
};

// ---- Glob ----

Glob::Glob(std::string_view pattern, char sep) : pattern_(pattern), sep_(sep) {
  auto is_star = [&] { return !tokens_.empty() && tokens_.back().kind >= kStar; };
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '*') {
      size_t j = i;
      while (j < pattern.size() && pattern[j] == '*') ++j;
      Kind k = (j - i >= 2 || sep == 0) ? kDoubleStar : kStar;
      if (is_star()) tokens_.back().kind = std::max(tokens_.back().kind, k);  // "*" then "**": one "**"
      else tokens_.push_back({k, 0, false, 0});
      i = j - 1;
    } else if (c == '?') {
      tokens_.push_back({kAny, 0, false, 0});
    } else if (c == '[') {
      std::array<uint64_t, 4> set{};
      size_t k = i + 1;
      bool negate = k < pattern.size() && (pattern[k] == '!' || pattern[k] == '^');
      if (negate) ++k;
      for (bool first = true; k < pattern.size() && (pattern[k] != ']' || first); ++k, first = false) {
        if (pattern[k] == '\\' && k + 1 < pattern.size()) ++k;
        auto lo = static_cast<unsigned char>(pattern[k]), hi = lo;
        if (k + 2 < pattern.size() && pattern[k + 1] == '-' && pattern[k + 2] != ']') {
          hi = static_cast<unsigned char>(pattern[k + 2]);
          k += 2;
        }
        for (unsigned v = lo; v <= hi; ++v) set[v >> 6] |= uint64_t{1} << (v & 63);
      }
      if (k >= pattern.size())
        throw Error(Code::kInvalidArgument, "glob " + quote(pattern) + " has an unterminated '['");
      tokens_.push_back({kClass, 0, negate, static_cast<uint16_t>(classes_.size())});
      classes_.push_back(set);
      i = k;
    } else {
      if (c == '\\' && i + 1 < pattern.size()) c = pattern[++i];
      tokens_.push_back({kChar, c, false, 0});
    }
  }
  // Fast paths: most patterns are a literal, or a literal followed by "**".
  size_t lit = 0;
  while (lit < tokens_.size() && tokens_[lit].kind == kChar) literal_ += tokens_[lit++].c;
  if (lit == tokens_.size()) mode_ = kExact;
  else if (lit + 1 == tokens_.size() && tokens_[lit].kind == kDoubleStar) mode_ = kPrefix;
  else mode_ = kAutomaton;
  if (mode_ != kAutomaton || tokens_.size() > 63) return;
  consumes_.assign(256, 0);
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const Token& t = tokens_[i];
    const uint64_t bit = uint64_t{1} << i;
    if (t.kind == kChar) consumes_[static_cast<unsigned char>(t.c)] |= bit;
    if (t.kind == kAny) any_ |= bit;
    if (t.kind == kStar) star_ |= bit;
    if (t.kind == kDoubleStar) double_star_ |= bit;
    if (t.kind == kClass)
      for (unsigned c = 0; c < 256; ++c)
        if (((classes_[t.set][c >> 6] >> (c & 63)) & 1) != t.negate && (c != static_cast<unsigned char>(sep_) || !sep_))
          consumes_[c] |= bit;
  }
}

bool Glob::match(std::string_view s) const {
  switch (mode_) {
    case kExact: return s == literal_;
    case kPrefix: return s.starts_with(literal_);
    case kAutomaton: return s.starts_with(literal_) && run(s);
  }
  return false;
}

// An NFA over token positions, run as bit sets: state i = tokens [0, i) matched. Linear in the
// input (times the pattern's words), whatever the stars: no backtracking to blow up on.
bool Glob::run(std::string_view s) const {
  const size_t n = tokens_.size();
  if (!consumes_.empty()) {
    // Consecutive stars were merged, so one shift closes over "a star may match nothing".
    const uint64_t stars = star_ | double_star_;
    uint64_t d = 1;
    d |= (d & stars) << 1;
    for (char c : s) {
      const bool is_sep = sep_ != 0 && c == sep_;
      const uint64_t advance = consumes_[static_cast<unsigned char>(c)] | (is_sep ? 0 : any_);
      d = ((d & advance) << 1) | (d & (is_sep ? double_star_ : stars));
      if (!d) return false;
      d |= (d & stars) << 1;
    }
    return (d >> n) & 1;
  }
  const size_t words = (n + 1 + 63) / 64;
  std::array<uint64_t, 8> stack_a{}, stack_b{};  // patterns up to 511 tokens need no heap
  std::vector<uint64_t> heap_a, heap_b;
  uint64_t *cur = stack_a.data(), *next = stack_b.data();
  if (words > stack_a.size()) {
    heap_a.assign(words, 0);
    heap_b.assign(words, 0);
    cur = heap_a.data();
    next = heap_b.data();
  }
  auto test = [](const uint64_t* b, size_t i) { return (b[i >> 6] >> (i & 63)) & 1; };
  auto set = [](uint64_t* b, size_t i) { b[i >> 6] |= uint64_t{1} << (i & 63); };
  auto close = [&](uint64_t* b) {  // a star may match nothing
    for (size_t i = 0; i < n; ++i)
      if (tokens_[i].kind >= kStar && test(b, i)) set(b, i + 1);
  };
  set(cur, 0);
  close(cur);
  for (char c : s) {
    std::fill(next, next + words, 0);
    bool any = false;
    for (size_t w = 0; w < words; ++w) {
      for (uint64_t bits = cur[w]; bits; bits &= bits - 1) {
        size_t i = w * 64 + static_cast<size_t>(std::countr_zero(bits));
        if (i >= n) continue;
        const Token& t = tokens_[i];
        const bool not_sep = c != sep_ || sep_ == 0;
        auto u = static_cast<unsigned char>(c);
        switch (t.kind) {
          case kStar: if (not_sep) { set(next, i); any = true; } break;
          case kDoubleStar: set(next, i); any = true; break;
          case kChar: if (c == t.c) { set(next, i + 1); any = true; } break;
          case kAny: if (not_sep) { set(next, i + 1); any = true; } break;
          case kClass:
            if (not_sep && (((classes_[t.set][u >> 6] >> (u & 63)) & 1) != t.negate)) {
              set(next, i + 1);
              any = true;
            }
            break;
        }
      }
    }
    if (!any) return false;
    close(next);
    std::swap(cur, next);
  }
  return test(cur, n);
}

// ---- hosts and paths ----

bool host_matches(std::string_view pattern, std::string_view host) {
  std::string h = lower(host);
  if (!h.empty() && h.back() == '.') h.pop_back();
  return HostPattern(pattern).match(h);
}

CanonicalPath canonicalize_path(std::string_view raw, bool allow_encoded_slash) {
  CanonicalPath r;
  auto fail = [&](std::string why) {
    r.path.clear();
    r.error = std::move(why);
    return r;
  };
  if (raw.empty()) raw = "/";
  if (raw.front() != '/') return fail("the path does not start with '/'");
  if (raw.size() > kMaxPathBytes) return fail("the path is longer than 4096 bytes");
  if (already_canonical(raw)) {
    r.ok = true;
    r.path = raw;
    return r;
  }
  r.path.reserve(raw.size());
  std::string seg;  // one decoded segment
  bool trailing = false;
  for (size_t pos = 1;;) {
    size_t end = raw.find('/', pos);
    const bool last = end == std::string_view::npos;
    std::string_view in = raw.substr(pos, last ? std::string_view::npos : end - pos);
    seg.clear();
    for (size_t i = 0; i < in.size(); ++i) {
      auto c = static_cast<unsigned char>(in[i]);
      bool encoded = false;
      if (c == '%') {
        if (i + 2 >= in.size()) return fail("a '%' is not followed by two hex digits");
        int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
        if (hi < 0 || lo < 0) return fail("a '%' is not followed by two hex digits");
        c = static_cast<unsigned char>(hi * 16 + lo);
        i += 2;
        encoded = true;
      }
      if (c < 0x20 || c == 0x7f) return fail("the path has a control character");
      if (c >= 0x80)
        return fail(encoded ? "the path has an encoded non-ASCII byte" : "the path has a raw non-ASCII byte");
      if (c == '\\') return fail("the path has a '\\', which some servers read as '/'");
      if (c == '#' && !encoded) return fail("the request target has a fragment");
      if (c == '/') {  // only when encoded
        if (!allow_encoded_slash) return fail("the path has an encoded '/' (%2F), which this endpoint does not allow");
        c = static_cast<unsigned char>(kEncodedSlash);
      }
      seg += static_cast<char>(c);
    }
    // Path parameters go before dot resolution, so "..;x" is the ".." a server would see.
    if (size_t semi = seg.find(';'); semi != std::string::npos) seg.resize(semi);
    trailing = false;
    if (seg == "..") {
      if (r.path.empty()) return fail("'..' climbs above '/'");
      r.path.resize(r.path.rfind('/'));
      trailing = last;
    } else if (seg == "." || seg.empty()) {
      trailing = last;
    } else {
      // With %2F allowed, a server that decodes it would see these dots as segments.
      for (size_t b = 0; b <= seg.size();) {
        size_t e = std::min(seg.find(kEncodedSlash, b), seg.size());
        std::string_view part = std::string_view(seg).substr(b, e - b);
        if (part == "." || part == "..") return fail("a '.' or '..' segment hides behind an encoded '/'");
        b = e + 1;
      }
      r.path += '/';
      for (char ch : seg) {
        auto u = static_cast<unsigned char>(ch);
        if (ch == kEncodedSlash) {
          r.path += "%2F";
        } else if (plain_path_char(u)) {
          r.path += ch;
        } else {
          r.path += '%';
          r.path += "0123456789ABCDEF"[u >> 4];
          r.path += "0123456789ABCDEF"[u & 15];
        }
      }
    }
    if (last) break;
    pos = end + 1;
  }
  if (r.path.empty() || trailing) r.path += '/';
  r.ok = true;
  return r;
}

namespace {

// target -> path and raw query; false (with why) when the target cannot be judged.
bool split_target(std::string_view target, std::string_view& path, std::string_view& query, std::string& why) {
  for (char c : target) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      why = "the request target has a space, control or non-ASCII byte";
      return false;
    }
  }
  if (target.find('#') != std::string_view::npos) {
    why = "the request target has a fragment";
    return false;
  }
  if (ieq_prefix(target, "http://") || ieq_prefix(target, "https://")) {  // absolute-form
    target.remove_prefix(target.find("//") + 2);
    size_t p = target.find_first_of("/?");
    target = p == std::string_view::npos ? std::string_view() : target.substr(p);
  } else if (target.empty() || target.front() != '/') {
    why = "the request target is neither a path nor an http(s) URL";
    return false;
  }
  size_t q = target.find('?');
  path = target.substr(0, q);
  query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  return true;
}

// A decoded query: '+' is a space, %HH a byte. False on a malformed escape.
bool decode_component(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out += ' ';
    } else if (in[i] == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += in[i];
    }
  }
  return true;
}

using Query = std::vector<std::pair<std::string, std::string>>;

bool parse_query(std::string_view raw, Query& out) {
  for (size_t pos = 0; pos <= raw.size();) {
    size_t end = std::min(raw.find('&', pos), raw.size());
    std::string_view item = raw.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty()) continue;
    size_t eq = item.find('=');
    std::pair<std::string, std::string> kv;
    if (!decode_component(item.substr(0, eq), kv.first)) return false;
    if (eq != std::string_view::npos && !decode_component(item.substr(eq + 1), kv.second)) return false;
    out.push_back(std::move(kv));
  }
  return true;
}

bool any_glob(const std::vector<Glob>& globs, std::string_view v) {
  return std::any_of(globs.begin(), globs.end(), [&](const Glob& g) { return g.match(v); });
}

// Allow side: every configured key present, and every one of its values matching.
bool allow_query_matches(const CRule& r, const Query& q) {
  for (const auto& [key, globs] : r.query) {
    bool seen = false;
    for (const auto& [k, v] : q) {
      if (k != key) continue;
      if (!any_glob(globs, v)) return false;
      seen = true;
    }
    if (!seen) return false;
  }
  return true;
}

// Deny side (OpenShell): every configured key present with at least one value matching, so a
// repeated parameter cannot hide the value the rule denies.
bool deny_query_matches(const CRule& r, const Query& q) {
  for (const auto& [key, globs] : r.query) {
    bool hit = std::any_of(q.begin(), q.end(),
                           [&](const auto& kv) { return kv.first == key && any_glob(globs, kv.second); });
    if (!hit) return false;
  }
  return true;
}

// Methods compare case-insensitively (method is uppercased); a GET rule covers HEAD (RFC 9110).
bool method_matches(std::string_view method, const std::string& rule) {
  return rule == "*" || method == rule || (method == "HEAD" && rule == "GET");
}

bool preset_allows(const CEndpoint& e, std::string_view m) {
  const bool ws = e.protocol == L7Protocol::kWebsocket;
  switch (e.preset) {
    case Preset::kNone: return false;
    case Preset::kFull: return true;
    case Preset::kReadOnly: return ws ? m == "GET" : (m == "GET" || m == "HEAD" || m == "OPTIONS");
    case Preset::kReadWrite:
      return ws ? (m == "GET" || m == "WEBSOCKET_TEXT")
                : (m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "POST" || m == "PUT" || m == "PATCH");
  }
  return false;
}

L7Protocol protocol_of(const std::string& p, const std::string& field) {
  if (p.empty() || p == "tcp") return L7Protocol::kNone;
  if (p == "rest") return L7Protocol::kRest;
  if (p == "websocket") return L7Protocol::kWebsocket;
  if (p == "graphql") return L7Protocol::kGraphql;
  if (p == "sql") return L7Protocol::kSql;
  if (p == "json-rpc") return L7Protocol::kJsonRpc;
  if (p == "mcp") return L7Protocol::kMcp;
  throw Error(Code::kInvalidArgument, field + ": unknown protocol " + quote(p), field);
}

// A glob, with the policy field named when it is malformed.
Glob compile_glob(const std::string& pattern, char sep, const std::string& field) {
  try {
    return Glob(pattern, sep);
  } catch (const Error& e) {
    throw Error(Code::kInvalidArgument, field + ": " + e.what(), field);
  }
}

CRule compile_rule(const Rule& r, const std::string& id) {
  CRule c;
  c.id = id;
  for (char ch : r.method) c.method += upper_char(ch);
  c.any_path = r.path.empty() || r.path == "**";
  if (!c.any_path) c.path = compile_glob(r.path, '/', id + ".path");
  for (const auto& [key, globs] : r.query) {
    std::vector<Glob> gs;
    for (size_t k = 0; k < globs.size(); ++k)
      gs.push_back(compile_glob(globs[k], 0, id + ".query." + key + "[" + std::to_string(k) + "]"));
    c.query.emplace_back(key, std::move(gs));
  }
  c.desc = c.method.empty() ? "operation rule" : c.method + " " + (r.path.empty() ? "**" : r.path);
  for (size_t k = 0; const auto& q : r.query) c.desc += (k++ ? "&" : " ?") + q.first + "=...";
  return c;
}

CEndpoint compile_endpoint(const Endpoint& e, uint32_t policy, const std::string& id) {
  CEndpoint c;
  c.policy = policy;
  c.id = id;
  c.ports = e.ports;
  c.allowed_ips = e.allowed_ips;
  c.hostless = e.host.empty();
  c.exact_host = !c.hostless && e.host.find('*') == std::string::npos;
  // A rule that names an IP literal names that address: it may then be loopback or private,
  // which the proxy otherwise always blocks.
  in_addr v4;
  in6_addr v6;
  if (inet_pton(AF_INET, e.host.c_str(), &v4) == 1) c.allowed_ips.push_back(e.host + "/32");
  else if (inet_pton(AF_INET6, e.host.c_str(), &v6) == 1) c.allowed_ips.push_back(e.host + "/128");

  c.protocol = protocol_of(e.protocol, id + ".protocol");
  const bool l7_fields = !e.access.empty() || !e.rules.empty() || !e.deny_rules.empty();
  if (e.protocol == "tcp" && l7_fields)
    throw Error(Code::kInvalidArgument, id + ": protocol tcp is not inspected, so access and rules cannot apply", id);
  // Rules on an endpoint without protocol are judged as REST rather than ignored: fail closed.
  if (c.protocol == L7Protocol::kNone && l7_fields) c.protocol = L7Protocol::kRest;
  c.inspect = c.protocol != L7Protocol::kNone;
  c.audit = e.enforcement == "audit";
  c.allow_encoded_slash = e.allow_encoded_slash;
  c.body = c.protocol == L7Protocol::kGraphql || c.protocol == L7Protocol::kSql ||
           c.protocol == L7Protocol::kJsonRpc || c.protocol == L7Protocol::kMcp;
  if (!e.path.empty() && e.path != "**") {
    c.has_selector = true;
    c.selector = compile_glob(e.path, '/', id + ".path");
  }
  if (!e.access.empty()) {
    const bool ws = c.protocol == L7Protocol::kWebsocket;
    if (e.access == "read-only") {
      c.preset = Preset::kReadOnly;
      c.preset_desc = ws ? "GET" : "GET, HEAD, OPTIONS";
    } else if (e.access == "read-write") {
      c.preset = Preset::kReadWrite;
      c.preset_desc = ws ? "GET, WEBSOCKET_TEXT" : "GET, HEAD, OPTIONS, POST, PUT, PATCH";
    } else if (e.access == "full") {
      c.preset = Preset::kFull;
      c.preset_desc = "every method";
    } else {
      throw Error(Code::kInvalidArgument, id + ".access: unknown preset " + quote(e.access), id + ".access");
    }
    c.preset_desc = "access " + e.access + " (" + c.preset_desc + ")";
    c.preset_id = id + ".access=" + e.access;
  }
  for (size_t j = 0; j < e.rules.size(); ++j)
    c.rules.push_back(compile_rule(e.rules[j], id + ".rules[" + std::to_string(j) + "]"));
  for (size_t j = 0; j < e.deny_rules.size(); ++j)
    c.deny_rules.push_back(compile_rule(e.deny_rules[j], id + ".deny_rules[" + std::to_string(j) + "]"));
  for (const auto* rules : {&c.rules, &c.deny_rules})
    for (const auto& r : *rules) {
      c.has_query_rules |= !r.query.empty();
      c.body_messages |= c.protocol == L7Protocol::kWebsocket && r.method.empty();
    }
  if (c.body && !(c.protocol == L7Protocol::kGraphql && c.preset == Preset::kFull && c.deny_rules.empty()))
    c.refuses = "protocol " + e.protocol + " rules are judged on the request body, which is not inspected yet";
  else if (c.preset != Preset::kNone)
    c.refuses = c.preset_desc + " does not allow it";
  else
    c.refuses = "none of its " + std::to_string(c.rules.size()) + " allow rules matches";
  return c;
}

}  // namespace

// ---- CompiledPolicy ----

CompiledPolicy::CompiledPolicy(std::unique_ptr<const Data> d) : d_(std::move(d)) {}
CompiledPolicy::~CompiledPolicy() = default;

std::shared_ptr<const CompiledPolicy> CompiledPolicy::compile(const Policy& p) {
  auto d = std::make_unique<Data>();
  for (size_t pi = 0; pi < p.network_policies.size(); ++pi) {
    const NetworkPolicy& np = p.network_policies[pi];
    CPolicy cp;
    cp.key = np.key;
    for (size_t b = 0; b < np.binaries.size(); ++b) {
      CBinary cb;
      cb.path = np.binaries[b].path;
      cb.is_glob = cb.path.find('*') != std::string::npos;
      if (cb.is_glob)
        cb.glob = compile_glob(cb.path, '/', "network_policies." + np.key + ".binaries[" + std::to_string(b) + "]");
      cp.listing += (cp.listing.empty() ? "" : ", ") + cb.path;
      cp.binaries.push_back(std::move(cb));
    }
    d->policies.push_back(std::move(cp));
    for (size_t i = 0; i < np.endpoints.size(); ++i) {
      const Endpoint& e = np.endpoints[i];
      auto idx = static_cast<uint32_t>(d->endpoints.size());
      std::string id = "network_policies." + np.key + ".endpoints[" + std::to_string(i) + "]";
      d->endpoints.push_back(compile_endpoint(e, static_cast<uint32_t>(pi), id));
      if (e.host.empty()) {
        if (!e.allowed_ips.empty()) d->hostless.push_back(idx);
        continue;
      }
      HostPattern hp = [&] {
        try {
          return HostPattern(e.host);
        } catch (const Error& err) {
          throw Error(Code::kInvalidArgument, id + ".host: " + err.what(), id + ".host");
        }
      }();
      if (hp.wildcard) d->wildcards.emplace_back(std::move(hp), idx);
      else d->exact[hp.exact].push_back(idx);
    }
  }
  // make_shared cannot reach the private constructor; the object is still owned from birth.
  return std::shared_ptr<const CompiledPolicy>(new CompiledPolicy(std::move(d)));
}

bool CompiledPolicy::names_host(std::string_view host_in) const {
  if (host_in.empty() || host_in.size() > 254) return false;
  std::string host;
  for (char c : host_in) host += lower_char(c);
  if (host.back() == '.') host.pop_back();
  if (d_->exact.count(host)) return true;
  for (const auto& [hp, idx] : d_->wildcards)
    if (hp.match(host)) return true;
  return false;
}

std::vector<std::string> CompiledPolicy::exact_hosts_on_port(uint16_t port) const {
  std::vector<std::pair<uint32_t, std::string>> found;
  for (const auto& [host, ids] : d_->exact)
    for (uint32_t i : ids) {
      const auto& ports = d_->endpoints[i].ports;
      if (std::find(ports.begin(), ports.end(), port) != ports.end()) {
        found.emplace_back(i, host);
        break;
      }
    }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [i, h] : found) out.push_back(std::move(h));
  return out;
}

ConnectDecision CompiledPolicy::decide_connect(std::string_view host_in, uint16_t port,
                                               std::span<const std::string> chain) const {
  ConnectDecision out;
  out.policy = shared_from_this();
  const Data& d = *d_;
  if (host_in.size() > 254) {
    out.reason = "the host name is longer than 253 characters";
    return out;
  }
  char buf[256];
  size_t n = 0;
  for (char c : host_in) buf[n++] = lower_char(c);
  if (n > 0 && buf[n - 1] == '.') --n;
  const std::string_view host(buf, n);

  // Endpoints naming this host on this port, in file order.
  std::vector<uint32_t>& hits = out.endpoints;
  if (auto it = d.exact.find(host); it != d.exact.end()) hits = it->second;
  for (const auto& [hp, idx] : d.wildcards)
    if (hp.match(host)) hits.push_back(idx);
  hits.insert(hits.end(), d.hostless.begin(), d.hostless.end());
  std::erase_if(hits, [&](uint32_t i) {
    const auto& ports = d.endpoints[i].ports;
    return std::find(ports.begin(), ports.end(), port) == ports.end();
  });
  std::sort(hits.begin(), hits.end());
  auto where = [&] { return std::string(host_in) + ":" + std::to_string(port); };  // for reasons only
  if (hits.empty()) {
    out.reason = "no network_policies endpoint allows " + where();
    return out;
  }

  // Which of them this process may use. An audit endpoint the binary misses is kept aside: it
  // decides only when nothing enforcing allows the connection.
  std::vector<uint32_t> audited;
  const CBinary* first_binary = nullptr;
  const uint32_t first_hit = hits.front();
  std::erase_if(hits, [&](uint32_t i) {
    const CEndpoint& e = d.endpoints[i];
    for (const CBinary& b : d.policies[e.policy].binaries)
      for (const std::string& exe : chain)
        if (b.match(exe)) {
          if (!first_binary) first_binary = &b;
          return false;
        }
    if (e.audit) audited.push_back(i);
    return true;
  });

  if (hits.empty()) {
    const CEndpoint& miss = d.endpoints[audited.empty() ? first_hit : audited.front()];
    const CPolicy& mp = d.policies[miss.policy];
    if (chain.empty()) {
      out.reason = "the connecting process's executable is unknown, and network_policies." + mp.key +
                   " allows only its binaries";
    } else {
      out.reason = "binary " + chain[0];
      if (chain.size() > 1) {
        out.reason += " (ancestors:";
        for (size_t i = 1; i < chain.size(); ++i) out.reason += " " + chain[i];
        out.reason += ")";
      }
      out.reason += " is not allowed to reach " + where() + " by network_policies." + mp.key +
                    (mp.binaries.empty() ? ", which lists no binaries" : " (binaries: " + mp.listing + ")");
    }
    out.rule = miss.id;
    if (audited.empty()) return out;
    out.audit = true;
    hits = std::move(audited);
  }

  out.allow = true;
  const CEndpoint& first = d.endpoints[hits.front()];
  if (out.rule.empty()) out.rule = first.id;
  if (first_binary && !out.audit) out.binary = first_binary->path;
  out.ips_only = true;
  for (uint32_t i : hits) {
    const CEndpoint& e = d.endpoints[i];
    if (e.inspect && !out.inspect) {
      out.inspect = true;
      out.protocol = e.protocol;
    }
    out.exact_host |= e.exact_host;
    out.ips_only &= e.hostless;
    for (const std::string& ip : e.allowed_ips)
      if (std::find(out.allowed_ips.begin(), out.allowed_ips.end(), ip) == out.allowed_ips.end())
        out.allowed_ips.push_back(ip);
  }
  return out;
}

// ---- requests ----

namespace {

// How one endpoint judged one request.
struct Verdict {
  enum Kind { kNone, kAllow, kDenyRule, kRefused, kMalformed } kind = kNone;
  const CEndpoint* ep = nullptr;
  const CRule* rule = nullptr;  // the allow or deny rule; nullptr for the preset
  int canon = 0;                // which canonical form (allow_encoded_slash) it judged
  std::string_view note;        // kMalformed: why
};

}  // namespace

RequestDecision decide_request(const ConnectDecision& conn, std::string_view method_in, std::string_view target) {
  RequestDecision r;
  r.rule = conn.rule;
  if (!conn.policy || !conn.allow) {
    r.reason = "the connection was not allowed" + (conn.reason.empty() ? "" : ": " + conn.reason);
    return r;
  }
  if (!conn.inspect) {
    r.allow = true;
    r.reason = "the endpoint is not inspected (L4 passthrough)";
    return r;
  }
  const auto& d = *conn.policy->d_;

  std::string method;
  for (char c : method_in) method += upper_char(c);
  std::string_view raw_path, raw_query;
  std::string target_error;
  const bool target_ok = !method.empty() && split_target(target, raw_path, raw_query, target_error);
  if (method.empty()) target_error = "the request has no method";
  CanonicalPath canon[2];  // [allow_encoded_slash]
  bool canon_done[2] = {false, false};
  Query query;
  int query_state = 0;  // 0 not parsed, 1 ok, -1 malformed; parsed only if some rule asks
  auto query_ok = [&] {
    if (query_state == 0) query_state = parse_query(raw_query, query) ? 1 : -1;
    return query_state > 0;
  };

  Verdict allow, audit_deny, enforce_fail, audit_fail;
  bool every_inspected_audits = true;
  for (uint32_t idx : conn.endpoints) {
    const CEndpoint& e = d.endpoints[idx];
    if (!e.inspect) continue;  // L4-only endpoints grant nothing on an inspected connection
    every_inspected_audits &= e.audit;
    const int ci = e.allow_encoded_slash ? 1 : 0;
    Verdict v{Verdict::kNone, &e, nullptr, ci, {}};
    if (target_ok && !canon_done[ci]) {
      canon[ci] = canonicalize_path(raw_path, ci == 1);
      canon_done[ci] = true;
    }
    if (!target_ok || !canon[ci].ok) {
      v.kind = Verdict::kMalformed;
      v.note = target_ok ? std::string_view(canon[ci].error) : std::string_view(target_error);
    } else if (e.has_selector && !e.selector.match(canon[ci].path)) {
      continue;  // this endpoint serves other paths of the host
    } else if (e.has_query_rules && !query_ok()) {
      v.kind = Verdict::kMalformed;
      v.note = "the query string has a malformed %-escape";
    } else {
      const std::string& path = canon[ci].path;
      auto matches = [&](const CRule& rule, bool deny) {
        return !rule.method.empty() && method_matches(method, rule.method) &&
               (rule.any_path || rule.path.match(path)) &&
               (deny ? deny_query_matches(rule, query) : allow_query_matches(rule, query));
      };
      if (!e.body)
        for (const CRule& rule : e.deny_rules)
          if (matches(rule, true)) {
            v = {Verdict::kDenyRule, &e, &rule, ci, {}};
            break;
          }
      if (v.kind == Verdict::kNone) {
        const bool graphql_full =
            e.protocol == L7Protocol::kGraphql && e.preset == Preset::kFull && e.deny_rules.empty();
        const bool needs_body = e.body ? !graphql_full : (method == "WEBSOCKET_TEXT" && e.body_messages);
        if (!needs_body && preset_allows(e, method)) {
          v.kind = Verdict::kAllow;
        } else if (!needs_body) {
          for (const CRule& rule : e.rules)
            if (matches(rule, false)) {
              v = {Verdict::kAllow, &e, &rule, ci, {}};
              break;
            }
        }
        if (v.kind == Verdict::kNone) {
          v.kind = Verdict::kRefused;
          if (needs_body && !e.body)
            v.note = "its GraphQL operation rules judge the message, which is not inspected yet";
        }
      }
    }
    if (v.kind == Verdict::kDenyRule && !e.audit) {  // deny wins over every allow
      enforce_fail = v;
      break;
    }
    if (v.kind == Verdict::kAllow && allow.kind == Verdict::kNone) allow = v;
    if (v.kind == Verdict::kDenyRule && audit_deny.kind == Verdict::kNone) audit_deny = v;
    if (v.kind != Verdict::kAllow) {
      Verdict& slot = e.audit ? audit_fail : enforce_fail;
      if (slot.kind == Verdict::kNone) slot = v;
    }
  }

  // The request as the reasons name it.
  // The reason, written in place: one allocation per decision.
  auto decide = [&](const Verdict& v, bool allowed, bool audit) {
    r.allow = allowed;
    r.audit = audit;
    if (v.rule) r.rule = v.rule->id;
    else if (v.kind == Verdict::kAllow) r.rule = v.ep->preset_id;  // allowed by its access preset
    else r.rule = v.ep->id;
    const bool ok = canon_done[v.canon] && canon[v.canon].ok;
    std::string& why = r.reason;
    why.reserve(160);
    if (audit) why += "enforcement: audit, would deny: ";
    if (v.kind == Verdict::kMalformed) {
      why.append("request target ").append(quote(target)).append(" refused: ").append(v.note);
      return r;
    }
    why.append(method_in.substr(0, 32)).append(" ");
    why.append(ok ? std::string_view(canon[v.canon].path) : target.substr(0, 200));
    if (v.kind == Verdict::kAllow)
      why.append(" allowed by ").append(v.rule ? "allow rule " : "").append(v.rule ? v.rule->desc : v.ep->preset_desc);
    else if (v.kind == Verdict::kDenyRule)
      why.append(" denied by deny rule ").append(v.rule->desc);
    else
      why.append(" not permitted by ").append(v.ep->id).append(": ").append(v.note.empty() ? v.ep->refuses : v.note);
    if (ok) r.path = std::move(canon[v.canon].path);  // its last use
    return r;
  };

  if (enforce_fail.kind == Verdict::kDenyRule) return decide(enforce_fail, false, false);
  if (allow.kind != Verdict::kNone) {
    if (audit_deny.kind != Verdict::kNone) return decide(audit_deny, true, true);
    return decide(allow, true, false);
  }
  if (enforce_fail.kind != Verdict::kNone) return decide(enforce_fail, false, false);
  if (audit_fail.kind != Verdict::kNone) return decide(audit_fail, true, true);
  // No inspected endpoint serves this path.
  r.allow = every_inspected_audits;
  r.audit = every_inspected_audits;
  const int ci = canon_done[1] && !canon_done[0] ? 1 : 0;
  if (canon_done[ci] && canon[ci].ok) r.path = canon[ci].path;
  r.reason = std::string(every_inspected_audits ? "enforcement: audit, would deny: " : "") +
             std::string(method_in.substr(0, 32)) + " " +
             (r.path.empty() ? std::string(target.substr(0, 200)) : r.path) +
             " matches no endpoint path of this connection";
  return r;
}

}  // namespace bulwark::policy
