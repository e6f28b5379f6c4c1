#pragma once
// Transparent egress: what the agent's first bytes on a redirected connection say about where it
// wants to go. The kernel tells the proxy the address and port (SO_ORIGINAL_DST); the bytes may
// add a name: the SNI of a TLS ClientHello, or the Host header of plain HTTP. Pure: no sockets.
// These bytes are the agent's: every length is checked against what was received, and a
// malformed or overlong hello yields no name (the decision then falls back to the address,
// which can only allow less).
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <asio/ip/address.hpp>

namespace bulwark::proxy {

enum class SniffKind {
  kIncomplete,  // more bytes are needed to tell
  kTls,         // a TLS handshake; name = the SNI host name (empty: none, or malformed)
  kHttp,        // an HTTP/1.x request head; name = its Host (without port; empty: none)
  kOpaque,      // anything else: decided by the original address alone
};

struct Sniff {
  SniffKind kind = SniffKind::kIncomplete;
  std::string name;   // lowercased, no trailing '.', a valid DNS name, or an IP literal (HTTP Host)
  std::string error;  // why a TLS/HTTP start gave no name, for logs
};

// The most bytes sniffing waits for: a ClientHello (post-quantum key shares make them ~1.5 KiB,
// up to 16 KiB in theory) or a request head.
inline constexpr size_t kMaxSniffBytes = 16 * 1024 + 5;

// final: no more bytes will come (the client paused, closed, or the limit was reached): an
// incomplete start is then decided as it stands (a TLS start without its SNI -> kTls, no name).
Sniff sniff_first_bytes(std::string_view bytes, bool final);

// Just the ClientHello: the server_name of type host_name, or "" (error says why when the bytes
// are not a well-formed hello). *complete = false when more bytes are needed.
std::string client_hello_sni(std::string_view bytes, bool* complete, std::string* error);

// A DNS host name as the policy matches them: letters, digits, '-', '_', dots between non-empty
// labels of at most 63, at most 253 in all.
bool valid_host_name(std::string_view name);

// May a transparent connection to `destination` be named `name` (its SNI or Host)? Only when the
// supervisor's own lookup of the name (`resolved`) includes the destination: otherwise an agent
// could send an allowed name to an address of its choosing (domain fronting, SNI spoofing).
// IPv4-mapped IPv6 addresses compare as the IPv4 address.
bool name_leads_to(const std::vector<asio::ip::address>& resolved, const asio::ip::address& destination);

}  // namespace bulwark::proxy
