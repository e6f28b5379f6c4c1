#pragma once
// A host as certificates and verification want it, shared by the PKI (shared/pki.cpp) and the
// sandbox CA (supervisor/proxy/sandbox_ca.cpp): header-only so neither needs the other's library.
#include <arpa/inet.h>

#include <cctype>
#include <optional>
#include <string>

namespace bulwark {

struct HostName {
  std::string text;  // lower-case DNS name without a trailing dot, or a canonical IP literal
  bool ip = false;
};

// "[2001:DB8::1]" and "2001:db8:0::1" give the same text. Letters, digits, '-' and '_' (seen in
// real service names) in dot-separated labels of 1..63: this also keeps wildcards and anything
// that could confuse a name parser out of certificates. nullopt for anything else.
inline std::optional<HostName> parse_host_name(const std::string& raw) {
  std::string h = raw;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  for (int family : {AF_INET, AF_INET6}) {
    unsigned char buf[sizeof(in6_addr)];
    if (::inet_pton(family, h.c_str(), buf) == 1) {
      char text[INET6_ADDRSTRLEN];
      ::inet_ntop(family, buf, text, sizeof text);
      return HostName{text, true};
    }
  }
  for (char& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!h.empty() && h.back() == '.') h.pop_back();
  bool ok = !h.empty() && h.size() <= 253;
  size_t label = 0;
  for (char c : h) {
    if (c == '.') {
      ok = ok && label > 0;
      label = 0;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') {
      ok = ok && ++label <= 63;
    } else {
      ok = false;
    }
  }
  if (!ok || label == 0) return std::nullopt;
  return HostName{h, false};
}

}  // namespace bulwark
