#include "supervisor/proxy/transparent.h"

#include <cstdint>

namespace bulwark::proxy {
namespace {

// A bounds-checked reader over the agent's bytes: every read fails (ok = false) rather than
// running past the end.
struct Reader {
  std::string_view b;
  size_t at = 0;
  bool ok = true;
  size_t left() const { return ok ? b.size() - at : 0; }
  uint32_t num(size_t n) {
    if (left() < n) {
      ok = false;
      return 0;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
    at += n;
    return v;
  }
  std::string_view take(size_t n) {
    if (left() < n) {
      ok = false;
      return {};
    }
    auto s = b.substr(at, n);
    at += n;
    return s;
  }
};

std::string lower_name(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

bool looks_like_ip_literal(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || c == '.' || c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
      return false;
  return s.find(':') != std::string_view::npos || (s.front() >= '0' && s.front() <= '9');
}

// An HTTP method token then a space: "GET ", "PROPFIND ". Only uppercase letters, as every
// registered method; up to 20 of them.
enum class HttpStart { kNo, kMaybe, kYes };
HttpStart http_start(std::string_view b) {
  for (size_t i = 0; i < b.size() && i <= 20; ++i) {
    char c = b[i];
    if (c == ' ') return i > 0 ? HttpStart::kYes : HttpStart::kNo;
    if (c < 'A' || c > 'Z') return HttpStart::kNo;
  }
  return b.size() <= 20 ? HttpStart::kMaybe : HttpStart::kNo;
}

// The Host of a complete head (the bytes up to the blank line), without its port.
std::string http_host(std::string_view head, std::string* error) {
  size_t at = head.find('\n');
  std::string found;
  int count = 0;
  while (at != std::string_view::npos && at + 1 < head.size()) {
    size_t end = head.find('\n', at + 1);
    std::string_view line = head.substr(at + 1, end == std::string_view::npos ? std::string_view::npos : end - at - 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    at = end;
    if (line.size() < 5) continue;
    bool is_host = true;
    for (size_t i = 0; i < 4; ++i)
      if ((line[i] | 0x20) != "host"[i]) is_host = false;
    if (!is_host || line[4] != ':') continue;
    ++count;
    std::string_view v = line.substr(5);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    if (!v.empty() && v.front() == '[') {
      size_t close = v.find(']');
      if (close == std::string_view::npos) {
        *error = "the Host header has an unterminated '['";
        return "";
      }
      found = lower_name(v.substr(1, close - 1));
    } else {
      size_t colon = v.rfind(':');
      found = lower_name(colon == std::string_view::npos ? v : v.substr(0, colon));
    }
  }
  if (count > 1) {
    *error = "more than one Host header";  // which one a server uses is anybody's guess
    return "";
  }
  if (count == 0) {
    *error = "no Host header";
    return "";
  }
  if (!valid_host_name(found) && !looks_like_ip_literal(found)) {
    *error = "the Host header is not a host name";
    return "";
  }
  return found;
}

}  // namespace

bool valid_host_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok || ++label > 63) return false;
  }
  return label > 0;
}

std::string client_hello_sni(std::string_view bytes, bool* complete, std::string* error) {
  *complete = false;
  // The handshake message may span several records: join their payloads first.
  std::string hs;
  Reader rec{bytes};
  uint32_t need = 0;  // the handshake message's length, once its header is in
  for (;;) {
    if (rec.left() < 5) return "";  // more records needed
    uint32_t type = rec.num(1);
    rec.num(2);  // legacy record version: any
    uint32_t len = rec.num(2);
    if (type != 0x16) {
      *complete = true;
      *error = "not a TLS handshake record";
      return "";
    }
    if (len == 0 || len > 16384 + 2048) {
      *complete = true;
      *error = "a TLS record length out of range";
      return "";
    }
    if (rec.left() < len) return "";
    hs.append(rec.take(len));
    if (hs.size() >= 4) {
      if (static_cast<uint8_t>(hs[0]) != 1) {
        *complete = true;
        *error = "the first handshake message is not a ClientHello";
        return "";
      }
      need = (static_cast<uint32_t>(static_cast<uint8_t>(hs[1])) << 16) |
             (static_cast<uint32_t>(static_cast<uint8_t>(hs[2])) << 8) | static_cast<uint8_t>(hs[3]);
      if (need + 4 > kMaxSniffBytes) {
        *complete = true;
        *error = "the ClientHello is larger than " + std::to_string(kMaxSniffBytes) + " bytes";
        return "";
      }
      if (hs.size() >= need + 4) break;
    }
  }
  *complete = true;
  Reader r{std::string_view(hs).substr(4, need)};
  r.num(2);          // client version
  r.take(32);        // random
  r.take(r.num(1));  // session id
  r.take(r.num(2));  // cipher suites
  r.take(r.num(1));  // compression methods
  if (!r.ok) {
    *error = "a truncated ClientHello";
    return "";
  }
  if (r.left() == 0) return "";  // no extensions at all: no SNI
  Reader ext{r.take(r.num(2))};
  if (!r.ok) {
    *error = "the ClientHello's extensions overrun it";
    return "";
  }
  std::string sni;
  bool seen = false;
  while (ext.left() > 0) {
    uint32_t type = ext.num(2);
    std::string_view data = ext.take(ext.num(2));
    if (!ext.ok) {
      *error = "a truncated ClientHello extension";
      return "";
    }
    if (type != 0) continue;
    if (seen) {
      *error = "two server_name extensions";
      return "";
    }
    seen = true;
    Reader list{data};
    Reader names{list.take(list.num(2))};
    if (!list.ok || list.left() != 0) {
      *error = "a malformed server_name extension";
      return "";
    }
    while (names.left() > 0) {
      uint32_t name_type = names.num(1);
      std::string_view name = names.take(names.num(2));
      if (!names.ok) {
        *error = "a malformed server_name entry";
        return "";
      }
      if (name_type != 0) continue;  // only host_name is defined
      if (!sni.empty()) {
        *error = "two host names in server_name";
        return "";
      }
      if (!valid_host_name(name)) {
        *error = "the SNI is not a valid host name";
        return "";
      }
      sni = lower_name(name);
    }
  }
  return sni;
}

bool name_leads_to(const std::vector<asio::ip::address>& resolved, const asio::ip::address& destination) {
  auto plain = [](const asio::ip::address& a) -> asio::ip::address {
    if (a.is_v6() && a.to_v6().is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
    return a;
  };
  for (const auto& r : resolved)
    if (plain(r) == plain(destination)) return true;
  return false;
}

Sniff sniff_first_bytes(std::string_view bytes, bool final) {
  Sniff s;
  if (bytes.empty()) {
    if (final) s.kind = SniffKind::kOpaque;
    return s;
  }
  if (static_cast<uint8_t>(bytes[0]) == 0x16) {
    bool complete = false;
    s.name = client_hello_sni(bytes.substr(0, kMaxSniffBytes), &complete, &s.error);
    if (!complete && !final && bytes.size() < kMaxSniffBytes) return Sniff{};
    if (!complete) s.error = "the ClientHello did not arrive whole";
    s.kind = SniffKind::kTls;
    return s;
  }
  switch (http_start(bytes)) {
    case HttpStart::kNo:
      s.kind = SniffKind::kOpaque;
      return s;
    case HttpStart::kMaybe:
      if (final) s.kind = SniffKind::kOpaque;
      return s;
    case HttpStart::kYes:
      break;
  }
  size_t end = bytes.find("\r\n\r\n");
  size_t end_lf = bytes.find("\n\n");
  end = std::min(end, end_lf);
  if (end == std::string_view::npos || end > kMaxSniffBytes) {
    if (!final && bytes.size() < kMaxSniffBytes) return Sniff{};
    s.kind = SniffKind::kHttp;
    s.error = "the request head did not arrive whole";
    return s;
  }
  s.kind = SniffKind::kHttp;
  s.name = http_host(bytes.substr(0, end + 2), &s.error);
  return s;
}

}  // namespace bulwark::proxy
