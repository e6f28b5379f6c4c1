#include "tests/support/test_pki.h"

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <fstream>
#include <utility>
#include <vector>

#include "shared/error.h"

namespace bulwark::testing {
namespace {

void check(bool ok, const std::string& what) {
  if (!ok) throw Error(Code::kInternal, "test PKI: " + what + " failed");
}

std::unique_ptr<X509, X509Free> make_cert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                                          const std::vector<std::pair<int, std::string>>& exts) {
  static std::atomic<long> serial{1};
  std::unique_ptr<X509, X509Free> x(X509_new());
  check(x != nullptr, "X509_new");
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 86400);
  X509_set_pubkey(x.get(), key);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
  for (const auto& [nid, value] : exts) {
    X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    check(e != nullptr, "certificate extension " + value);
    X509_add_ext(x.get(), e, -1);
    X509_EXTENSION_free(e);
  }
  check(X509_sign(x.get(), issuer_key ? issuer_key : key, EVP_sha256()) > 0, "X509_sign");
  return x;
}

}  // namespace

TestPki::TestPki(const std::string& ca_name) : ca_key(EVP_EC_gen("P-256")), leaf_key(EVP_EC_gen("P-256")) {
  check(ca_key && leaf_key, "EVP_EC_gen");
  ca = make_cert(ca_key.get(), ca_name, nullptr, nullptr,
                 {{NID_basic_constraints, "critical,CA:TRUE"}, {NID_key_usage, "critical,keyCertSign,cRLSign"}});
  leaf = make_cert(leaf_key.get(), "localhost", ca.get(), ca_key.get(),
                   {{NID_basic_constraints, "CA:FALSE"},
                    {NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"},
                    {NID_ext_key_usage, "serverAuth"}});
  std::unique_ptr<BIO, decltype(&BIO_free_all)> bio(BIO_new(BIO_s_mem()), &BIO_free_all);
  PEM_write_bio_X509(bio.get(), ca.get());
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  ca_file = dir.file("upstream-ca.pem");
  std::ofstream(ca_file) << std::string(data, static_cast<size_t>(n));
}

std::unique_ptr<SSL_CTX, SslCtxFree> TestPki::server_ctx() const {
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_server_method()));
  check(ctx && SSL_CTX_use_certificate(ctx.get(), leaf.get()) == 1 && SSL_CTX_use_PrivateKey(ctx.get(), leaf_key.get()) == 1,
        "server context");
  return ctx;
}

}  // namespace bulwark::testing
