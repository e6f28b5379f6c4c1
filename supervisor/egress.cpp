#include "supervisor/egress.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>

namespace bulwark::supervisor {

namespace {
std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
// '*' matches any run of characters within one label (never a '.').
bool glob_label(const std::string& pat, const std::string& s) {
  size_t p = 0, i = 0, star = std::string::npos, mark = 0;
  while (i < s.size()) {
    if (p < pat.size() && pat[p] == '*') {
      star = p++;
      mark = i;
    } else if (p < pat.size() && pat[p] == s[i]) {
      ++p;
      ++i;
    } else if (star != std::string::npos && s[mark] != '.') {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size() && s.find('.') == std::string::npos;
}
}  // namespace

bool host_matches(const std::string& pattern_in, const std::string& host_in) {
  std::string pattern = lower(pattern_in), host = lower(host_in);
  if (!host.empty() && host.back() == '.') host.pop_back();
  if (pattern.find('*') == std::string::npos) return pattern == host;
  size_t pdot = pattern.find('.');
  if (pdot == std::string::npos) return false;  // bare wildcards are rejected by validation anyway
  std::string first = pattern.substr(0, pdot), rest = pattern.substr(pdot);  // rest starts with '.'
  if (host.size() <= rest.size() || host.compare(host.size() - rest.size(), rest.size(), rest) != 0) return false;
  std::string head = host.substr(0, host.size() - rest.size());  // the labels before the suffix
  if (first == "**") return !head.empty();
  return glob_label(first, head);
}

L4Decision decide_l4(const policy::Policy& p, const std::string& host, uint16_t port) {
  for (const auto& np : p.network_policies) {
    for (size_t i = 0; i < np.endpoints.size(); ++i) {
      const auto& e = np.endpoints[i];
      if (e.host.empty() || !host_matches(e.host, host)) continue;
      if (std::find(e.ports.begin(), e.ports.end(), port) == e.ports.end()) continue;
      L4Decision d;
      d.allow = true;
      d.rule = "network_policies." + np.key + ".endpoints[" + std::to_string(i) + "]";
      d.allowed_ips = e.allowed_ips;
      d.exact_host = e.host.find('*') == std::string::npos;
      // A rule that names an IP literal names that address: it may then be loopback or private,
      // which the proxy otherwise always blocks.
      in_addr v4;
      in6_addr v6;
      if (inet_pton(AF_INET, e.host.c_str(), &v4) == 1) d.allowed_ips.push_back(e.host + "/32");
      else if (inet_pton(AF_INET6, e.host.c_str(), &v6) == 1) d.allowed_ips.push_back(e.host + "/128");
      return d;
    }
  }
  L4Decision d;
  d.reason = "no network_policies endpoint allows " + host + ":" + std::to_string(port);
  return d;
}

}  // namespace bulwark::supervisor
