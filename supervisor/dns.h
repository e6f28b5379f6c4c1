#pragma once
// The sandbox's DNS, message by message (pure; dns_test.cpp). The agent's queries are attacker
// input: every read is bounds-checked, compression pointers may only point backwards and are
// followed at most kMaxPointerJumps times, names are capped at 255 bytes.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/ip/address.hpp>

namespace bulwark::supervisor {

inline constexpr int kMaxPointerJumps = 16;
inline constexpr uint16_t kTypeA = 1, kTypeAAAA = 28;
inline constexpr uint8_t kRcodeNoError = 0, kRcodeFormErr = 1, kRcodeServFail = 2, kRcodeNxDomain = 3,
                         kRcodeNotImp = 4, kRcodeRefused = 5;

struct DnsQuery {
  uint16_t id = 0;
  bool recursion_desired = false;
  std::string name;  // lowercased, without the trailing '.'; labels as sent (may hold any byte)
  uint16_t qtype = 0, qclass = 0;
};

struct DnsParse {
  std::optional<DnsQuery> query;  // set when the message is one well-formed standard query
  // Malformed (or not a standard query): the rcode to answer with, when the header was readable
  // enough to answer at all (has_id); otherwise the message is dropped.
  uint8_t rcode = kRcodeFormErr;
  bool has_id = false;
  uint16_t id = 0;
  std::string error;
};

DnsParse parse_dns_query(std::string_view msg);

// A response to q: rcode, and for kRcodeNoError the addresses of q's type (A: IPv4, AAAA: IPv6;
// others are left out), each with ttl.
std::string dns_response(const DnsQuery& q, uint8_t rcode, const std::vector<asio::ip::address>& addrs, uint32_t ttl);
// A header-only error response (FORMERR, NOTIMP) to a message that could not be parsed whole.
std::string dns_error_response(uint16_t id, uint8_t rcode);

// For logs: the name with anything but [a-z0-9._-] escaped as \xHH.
std::string printable_name(std::string_view name);

}  // namespace bulwark::supervisor
