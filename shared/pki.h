#pragma once
// Bulwark's own PKI, bootstrapped on first start like OpenShell's: one CA (EC P-256, 10 years),
// a server certificate for the gateway and one for nats-server, and a client certificate per
// identity (CN = the identity: "cli-admin", "gateway", "scheduler", ...). Everything is PEM in one
// directory (mode 0700; private keys 0600, certificates 0644):
//
//   ca.crt  ca.key                      the CA
//   gateway-server.crt  .key            the gateway's HTTPS / WebSocket listener
//   nats-server.crt  .key               nats-server's TLS listener
//   client-<identity>.crt  .key         one per identity, clientAuth
//
// ensure_pki creates whatever is missing and keeps whatever is there and valid; it never
// overwrites a file. An expired certificate, a key that does not match its certificate, a
// certificate not signed by ca.crt, or a server certificate lacking a requested name is an Error
// naming the file and saying what to delete to have it regenerated (rotation = delete + restart).
// Link `bulwark_pki`.
#include <string>
#include <vector>

#include "shared/openssl_ptr.h"

namespace bulwark::pki {

// The identities that get a client certificate by default: the CLI's admin and every service.
inline const std::vector<std::string>& default_client_identities() {
  static const std::vector<std::string> ids = {
      "cli-admin",      "gateway",       "scheduler",     "policy-service", "privacy-router",
      "driver-podman",  "driver-docker", "driver-k8s",    "driver-vm",      "supervisor"};
  return ids;
}

struct Options {
  // Extra subjectAltNames for both server certificates, beyond localhost, 127.0.0.1, ::1 and the
  // host name: DNS names and IP literals (told apart by parsing; brackets around IPv6 allowed).
  std::vector<std::string> extra_names;
  // Client certificates to make sure exist: [a-z0-9_-] names, at most 64 characters.
  std::vector<std::string> client_identities = default_client_identities();
  // Lifetimes of certificates created now (existing ones are kept as they are).
  int ca_days = 3650;
  int leaf_days = 1825;
};

// Where each file of a PKI directory lives. Pure path arithmetic: nothing is read or created.
struct Paths {
  std::string dir;
  std::string ca_cert, ca_key;
  std::string gateway_cert, gateway_key;
  std::string nats_cert, nats_key;
  std::string client_cert(const std::string& identity) const;  // <dir>/client-<identity>.crt
  std::string client_key(const std::string& identity) const;   // <dir>/client-<identity>.key
};
Paths paths(const std::string& dir);

struct Result {
  Paths paths;
  std::vector<std::string> created;  // files written by this call (empty when all were reused)
  std::string ca_fingerprint;        // SHA-256 of ca.crt's DER, "AB:CD:..." like openssl prints
};

// Creates the directory (0700, parents too) and every missing file, signing with ca.key; keeps
// and validates every existing one (see the top of this file). Safe to call from several
// processes at once (an flock on <dir>/.lock). Throws bulwark::Error: kFailedPrecondition naming
// the file for an expired / mismatched / foreign file, kInvalidArgument for a bad option,
// kInternal with errno or the OpenSSL error otherwise.
Result ensure_pki(const std::string& dir, const Options& options = {});

// The SHA-256 fingerprint of the first certificate in a PEM file, "AB:CD:...". Throws Error
// (kInvalidArgument naming the file) when it cannot be read or parsed.
std::string cert_fingerprint(const std::string& pem_file);

// Checks a PEM certificate/key pair a client was pointed at before any connection is tried, so a
// wrong path is reported as such and not as a TLS handshake failure: both readable and parseable,
// the key matching the certificate, the certificate not expired. `field` names the flag in the
// Error (e.g. "client_cert"). Either path may be empty (then it is not checked).
void check_cert_and_key(const std::string& cert_file, const std::string& key_file, const std::string& cert_field,
                        const std::string& key_field);

// Checks that a PEM file holds at least one parseable certificate (a CA bundle); Error naming
// `field` otherwise.
void check_ca_file(const std::string& ca_file, const std::string& field);

// The pieces every certificate Bulwark makes shares (this PKI, the supervisor's per-sandbox CA):
// a fresh EC P-256 key, and a random positive 127-bit serial. Throw bulwark::Error (kInternal).
ossl::PkeyPtr new_p256_key();
void set_random_serial(X509* x);

}  // namespace bulwark::pki
