#include "services/gateway-api/paging.h"

#include <algorithm>

#include "shared/error.h"
#include "shared/nats_auth.h"

namespace bulwark::gateway {

namespace {
Error bad_token(const std::string& why) {
  return Error(Code::kInvalidArgument,
               "page_token: " + why + " (pass the next_page_token of the previous page, with the same filters)", "page_token");
}

// FNV-1a 64: stable everywhere, unlike std::hash. Not a security boundary: it only tells filters apart.
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}
}  // namespace

// The encoding NATS JWTs use too (shared/nats_auth.h); a page token also refuses padding.
std::string base64url_encode(const std::string& bytes) { return nats_auth::base64url_encode(bytes); }

std::optional<std::string> base64url_decode(const std::string& text) {
  if (text.find('=') != std::string::npos) return std::nullopt;
  try {
    return nats_auth::base64url_decode(text);
  } catch (const Error&) {
    return std::nullopt;  // a character outside the alphabet
  }
}

size_t parse_limit(const std::optional<std::string>& value) {
  if (!value) return kDefaultPageSize;
  const std::string& v = *value;
  bool digits = !v.empty() && v.size() <= 7 && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
  size_t n = digits ? std::stoul(v) : 0;
  if (n < 1 || n > kMaxPageSize)
    throw Error(Code::kInvalidArgument, "limit: must be an integer from 1 to " + std::to_string(kMaxPageSize) + ", got '" + v + "'",
                "limit");
  return n;
}

v1::SandboxPhase parse_phase(const std::string& name) {
  v1::SandboxPhase p{};
  if (name != "PHASE_UNSPECIFIED" && v1::SandboxPhase_Parse(name, &p)) return p;
  std::string names;
  for (int i = v1::PENDING; i <= v1::SandboxPhase_MAX; ++i)
    if (v1::SandboxPhase_IsValid(i)) names += (names.empty() ? "" : ", ") + v1::SandboxPhase_Name(static_cast<v1::SandboxPhase>(i));
  throw Error(Code::kInvalidArgument, "phase: '" + name + "' is not one of " + names, "phase");
}

std::pair<std::string, std::string> parse_label(const std::string& selector) {
  size_t eq = selector.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error(Code::kInvalidArgument, "label: '" + selector + "' must look like KEY=VALUE", "label");
  return {selector.substr(0, eq), selector.substr(eq + 1)};
}

SandboxFilter make_filter(bool all, const std::vector<std::string>& phases, const std::vector<std::string>& labels) {
  SandboxFilter f;
  for (const auto& p : phases) f.phases.push_back(parse_phase(p));
  for (const auto& l : labels) f.labels.push_back(parse_label(l));
  // One spelling per filter, so that equal filters have equal fingerprints.
  std::sort(f.phases.begin(), f.phases.end());
  f.phases.erase(std::unique(f.phases.begin(), f.phases.end()), f.phases.end());
  std::sort(f.labels.begin(), f.labels.end());
  f.labels.erase(std::unique(f.labels.begin(), f.labels.end()), f.labels.end());
  f.include_deleted = all || std::find(f.phases.begin(), f.phases.end(), v1::DELETED) != f.phases.end();
  return f;
}

bool SandboxFilter::matches(const v1::Sandbox& s) const {
  if (!include_deleted && s.phase() == v1::DELETED) return false;
  if (!phases.empty() && std::find(phases.begin(), phases.end(), s.phase()) == phases.end()) return false;
  for (const auto& [k, v] : labels) {
    auto it = s.spec().labels().find(k);
    if (it == s.spec().labels().end() || it->second != v) return false;
  }
  return !owner || s.owner() == *owner;
}

std::string SandboxFilter::fingerprint() const {
  std::string s = include_deleted ? "all" : "live";
  for (auto p : phases) s += "|p" + std::to_string(static_cast<int>(p));
  // Lengths first: "a=b" + "c" and "a" + "b=c" must not collide.
  for (const auto& [k, v] : labels) s += "|l" + std::to_string(k.size()) + ":" + k + std::to_string(v.size()) + ":" + v;
  if (owner) s += "|o" + *owner;
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t h = fnv1a(s);
  std::string out;
  for (int i = 60; i >= 0; i -= 4) out += kHex[(h >> i) & 0xf];
  return out;
}

std::string encode_sandbox_token(const SandboxCursor& c, const SandboxFilter& f) {
  return base64url_encode("s1|" + std::to_string(c.created_ms) + "|" + c.sandbox_id + "|" + f.fingerprint());
}

SandboxCursor decode_sandbox_token(const std::string& token, const SandboxFilter& f) {
  auto raw = token.size() <= 256 ? base64url_decode(token) : std::nullopt;
  if (!raw) throw bad_token("'" + token.substr(0, 64) + "' is not a page token of this list");
  auto parts = split(*raw, '|');
  if (parts.size() != 4 || parts[0] != "s1" || parts[1].empty() || parts[1].size() > 18 ||
      !std::all_of(parts[1].begin(), parts[1].end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw bad_token("'" + token.substr(0, 64) + "' is not a page token of this list");
  if (parts[3] != f.fingerprint()) throw bad_token("the token was made for other phase, label or all filters");
  return {std::stoll(parts[1]), parts[2]};
}

std::string encode_provider_token(const std::string& last_name) { return base64url_encode("p1|" + last_name); }

std::string decode_provider_token(const std::string& token) {
  auto raw = token.size() <= 256 ? base64url_decode(token) : std::nullopt;
  if (!raw || raw->rfind("p1|", 0) != 0 || raw->size() == 3) throw bad_token("'" + token.substr(0, 64) + "' is not a page token of this list");
  return raw->substr(3);
}

}  // namespace bulwark::gateway
