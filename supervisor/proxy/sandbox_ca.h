#pragma once
// The sandbox's own certificate authority, for TLS interception by the egress proxy. For
// `protocol: rest` endpoints the proxy terminates the agent's TLS with a leaf certificate minted
// here (so it can check method and path), then opens its own verified TLS connection upstream.
//
// Each sandbox gets a fresh CA whose private key exists only in this process's memory: it is
// never written anywhere, so a leaked trust bundle lets nobody impersonate hosts to anyone but
// that one sandbox, and only while it runs. The agent trusts it through a bundle file
// (write_trust_bundle) and the usual environment variables (trust_env).
//
// Handing contexts to Asio: `asio::ssl::stream<tcp::socket> s(std::move(sock), SSL_new(ctx.get()))`
// (the stream owns the SSL*, which holds its own reference to the SSL_CTX). Do not wrap these
// contexts in an asio::ssl::context: its destructor frees the SSL_CTX and whatever is in its app
// data.
#include <openssl/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "shared/openssl_ptr.h"

namespace bulwark::proxy {

// Kept visible here for the users of this header (tests, bench) that name proxy's OsslFree.
using bulwark::OsslFree;

class SandboxCa {
 public:
  // Leaf contexts cached per host; the least recently used is dropped beyond this (connections
  // still using it keep it alive through their shared_ptr / SSL*).
  static constexpr size_t kMaxCachedHosts = 1024;
  // A cached leaf is re-minted once it is this old, well before its 7-day validity ends, so a
  // long-lived sandbox never gets served an expired certificate.
  static constexpr std::chrono::hours kLeafRefreshAge{24 * 6};

  // A fresh CA: EC P-256 key, self-signed X.509 v3, CN "Bulwark sandbox <id> CA",
  // basicConstraints critical CA:TRUE pathlen:0, keyUsage keyCertSign+cRLSign, valid from an
  // hour ago (clock skew) for 30 days, random 128-bit serial. Throws bulwark::Error.
  static SandboxCa generate(const std::string& sandbox_id);

  // Movable, not copyable (a moved-from SandboxCa may only be destroyed or assigned to).
  SandboxCa(SandboxCa&&) noexcept;
  SandboxCa& operator=(SandboxCa&&) noexcept;
  ~SandboxCa();

  const std::string& sandbox_id() const;
  std::string cert_pem() const;
  X509* cert() const;  // borrowed; valid while this SandboxCa lives

  // A TLS server context (TLS 1.2+) presenting a leaf for `host`, signed by this CA: SAN DNS:host,
  // or IP:host for an IPv4/IPv6 literal (brackets allowed), serverAuth, valid from an hour ago
  // for 7 days (never past the CA's end). ALPN: only "http/1.1" is ever selected, and nothing is
  // selected when the client does not offer it, so clients never switch to HTTP/2 (the proxy
  // parses HTTP/1.1 only; a client offering only h2 falls back to no ALPN, which means HTTP/1.1).
  // Cached by lower-cased host; thread-safe. Throws bulwark::Error (kInvalidArgument for a host
  // that is not a DNS name or IP literal).
  std::shared_ptr<SSL_CTX> server_ctx_for(const std::string& host);
  size_t cached_hosts() const;

  // Writes the system bundle's contents (a file path; empty = none) followed by this CA into
  // `<dir>/ca-bundle.crt`, mode 0644, atomically (temp file + rename), and returns that path.
  std::string write_trust_bundle(const std::string& dir, const std::string& system_bundle) const;

  // For the upstream side: a TLS 1.2+ client context with SSL_VERIFY_PEER against the system
  // roots plus, when given, an operator CA file (PEM). It offers ALPN "http/1.1" only. One context
  // serves every upstream connection; call prepare_client_ssl on each SSL. Throws bulwark::Error.
  static std::shared_ptr<SSL_CTX> client_ctx(const std::string& extra_ca_file = "");

 private:
  struct Impl;
  explicit SandboxCa(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Sets up an upstream SSL for `host`: SNI (for names only: RFC 6066 forbids IP literals there)
// and verification of the peer certificate against that name or IP. Throws bulwark::Error.
void prepare_client_ssl(SSL* ssl, const std::string& host);

// The first readable of the usual system CA bundle paths (Debian, then Red Hat), or "".
std::string find_system_bundle();

// The environment variables that point the agent's TLS stacks (OpenSSL, Python requests, curl,
// Node, git) at `bundle_path`: SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE,
// NODE_EXTRA_CA_CERTS, GIT_SSL_CAINFO.
std::vector<std::pair<std::string, std::string>> trust_env(const std::string& bundle_path);

}  // namespace bulwark::proxy
