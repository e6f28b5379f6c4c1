#pragma once
// Ownership of OpenSSL objects and the text of OpenSSL's error queue, shared by every unit that
// calls OpenSSL directly (shared/pki.cpp, gateway-api's TLS, the sandbox CA). Header-only, so any
// target that links OpenSSL can use it.
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

namespace bulwark {

// A unique_ptr deleter for an OpenSSL free function: std::unique_ptr<X509, OsslFree<X509_free>>.
template <auto F>
struct OsslFree {
  template <class T>
  void operator()(T* p) const { F(p); }
};

// Every OpenSSL error queued on this thread, joined, and the queue left empty.
inline std::string ossl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error reported" : out;
}

// In their own namespace so tests that name their own X509Ptr under `using namespace bulwark`
// stay unambiguous.
namespace ossl {
using X509Ptr = std::unique_ptr<X509, OsslFree<X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, OsslFree<EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, OsslFree<BIO_free_all>>;
using BnPtr = std::unique_ptr<BIGNUM, OsslFree<BN_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, OsslFree<X509_EXTENSION_free>>;
using StorePtr = std::unique_ptr<X509_STORE, OsslFree<X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, OsslFree<X509_STORE_CTX_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, OsslFree<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, OsslFree<SSL_free>>;
}  // namespace ossl

}  // namespace bulwark
