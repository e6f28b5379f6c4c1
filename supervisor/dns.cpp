#include "supervisor/dns.h"

#include <cstdio>

namespace bulwark::supervisor {
namespace {

uint16_t u16(std::string_view m, size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(m[at]) << 8) | static_cast<uint8_t>(m[at + 1]));
}

void put16(std::string& out, uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xff);
}

// Reads the name at `at`; *end = where the question continues (after the first pointer, or the
// terminating zero). False on anything malformed.
bool read_name(std::string_view m, size_t at, std::string* name, size_t* end, std::string* error) {
  int jumps = 0;
  bool jumped = false;
  size_t wire_len = 1;
  for (;;) {
    if (at >= m.size()) {
      *error = "the name runs past the message";
      return false;
    }
    uint8_t len = static_cast<uint8_t>(m[at]);
    if ((len & 0xc0) == 0xc0) {
      if (at + 1 >= m.size()) {
        *error = "a truncated compression pointer";
        return false;
      }
      size_t target = static_cast<size_t>(((len & 0x3f) << 8) | static_cast<uint8_t>(m[at + 1]));
      // Only backwards: a pointer can then never loop, and the jump cap bounds the work anyway.
      if (target >= at || ++jumps > kMaxPointerJumps) {
        *error = "a compression pointer that does not point backwards, or too many";
        return false;
      }
      if (!jumped) *end = at + 2;
      jumped = true;
      at = target;
      continue;
    }
    if ((len & 0xc0) != 0) {
      *error = "a label type that is not defined";
      return false;
    }
    if (len == 0) {
      if (!jumped) *end = at + 1;
      if (!name->empty()) name->pop_back();  // the last '.'
      return true;
    }
    wire_len += len + 1u;
    if (wire_len > 255 || at + 1 + len > m.size()) {
      *error = wire_len > 255 ? "the name is longer than 255 bytes" : "a label runs past the message";
      return false;
    }
    for (size_t i = 0; i < len; ++i) {
      char c = m[at + 1 + i];
      *name += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
    *name += '.';
    at += 1 + len;
  }
}

void put_name(std::string& out, std::string_view name) {
  size_t at = 0;
  while (at < name.size()) {
    size_t dot = name.find('.', at);
    if (dot == std::string_view::npos) dot = name.size();
    out += static_cast<char>(dot - at);
    out.append(name.substr(at, dot - at));
    at = dot + 1;
  }
  out += '\0';
}

}  // namespace

DnsParse parse_dns_query(std::string_view m) {
  DnsParse r;
  if (m.size() < 12) {
    r.error = "shorter than a DNS header";
    return r;
  }
  r.has_id = true;
  r.id = u16(m, 0);
  uint16_t flags = u16(m, 2);
  if (flags & 0x8000) {
    r.has_id = false;  // a response: never answer one (no reflection loops)
    r.error = "a response, not a query";
    return r;
  }
  if (((flags >> 11) & 0xf) != 0) {
    r.rcode = kRcodeNotImp;
    r.error = "not a standard query";
    return r;
  }
  if (u16(m, 4) != 1) {
    r.error = "not exactly one question";
    return r;
  }
  DnsQuery q;
  q.id = r.id;
  q.recursion_desired = (flags & 0x0100) != 0;
  size_t end = 0;
  if (!read_name(m, 12, &q.name, &end, &r.error)) return r;
  if (end + 4 > m.size()) {
    r.error = "the question is cut short";
    return r;
  }
  q.qtype = u16(m, end);
  q.qclass = u16(m, end + 2);
  r.query = std::move(q);
  r.rcode = kRcodeNoError;
  return r;
}

std::string dns_response(const DnsQuery& q, uint8_t rcode, const std::vector<asio::ip::address>& addrs, uint32_t ttl) {
  std::vector<const asio::ip::address*> answers;
  if (rcode == kRcodeNoError)
    for (const auto& a : addrs)
      if ((q.qtype == kTypeA && a.is_v4()) || (q.qtype == kTypeAAAA && a.is_v6())) answers.push_back(&a);
  std::string out;
  put16(out, q.id);
  // QR, opcode 0, AA (the sandbox's own answer), RD as asked, RA, rcode.
  put16(out, static_cast<uint16_t>(0x8000 | 0x0400 | (q.recursion_desired ? 0x0100 : 0) | 0x0080 | rcode));
  put16(out, 1);
  put16(out, static_cast<uint16_t>(answers.size()));
  put16(out, 0);
  put16(out, 0);
  put_name(out, q.name);
  put16(out, q.qtype);
  put16(out, q.qclass);
  for (const auto* a : answers) {
    put16(out, 0xc00c);  // the question's name
    put16(out, a->is_v4() ? kTypeA : kTypeAAAA);
    put16(out, 1);  // IN
    put16(out, static_cast<uint16_t>(ttl >> 16));
    put16(out, static_cast<uint16_t>(ttl & 0xffff));
    if (a->is_v4()) {
      auto b = a->to_v4().to_bytes();
      put16(out, 4);
      out.append(reinterpret_cast<const char*>(b.data()), b.size());
    } else {
      auto b = a->to_v6().to_bytes();
      put16(out, 16);
      out.append(reinterpret_cast<const char*>(b.data()), b.size());
    }
  }
  return out;
}

std::string dns_error_response(uint16_t id, uint8_t rcode) {
  std::string out;
  put16(out, id);
  put16(out, static_cast<uint16_t>(0x8000 | 0x0080 | rcode));
  out.append(8, '\0');
  return out;
}

std::string printable_name(std::string_view name) {
  std::string out;
  for (char c : name) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_') {
      out += c;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(static_cast<uint8_t>(c)));
      out += buf;
    }
  }
  return out;
}

}  // namespace bulwark::supervisor
