#pragma once
// A throwaway PKI for tests and benchmarks of TLS through the egress proxy: an "operator's" CA
// (written to a PEM file, as --upstream-ca names one) and a server certificate it signed for
// localhost and 127.0.0.1, both with EC P-256 keys.
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "shared/util.h"

namespace bulwark::testing {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct SslCtxFree {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};

struct TestPki {
  // Throws bulwark::Error when OpenSSL fails.
  explicit TestPki(const std::string& ca_name = "Bulwark test upstream CA");
  // A TLS server context presenting the leaf certificate.
  std::unique_ptr<SSL_CTX, SslCtxFree> server_ctx() const;

  TempDir dir{"bulwark-test-pki"};
  std::unique_ptr<EVP_PKEY, PkeyFree> ca_key, leaf_key;
  std::unique_ptr<X509, X509Free> ca, leaf;
  std::string ca_file;  // the CA certificate, PEM
};

}  // namespace bulwark::testing
