#include "services/gateway-api/tls.h"

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <spdlog/spdlog.h>

#include <filesystem>

#include "shared/error.h"
#include "shared/openssl_ptr.h"
#include "shared/pki.h"

namespace bulwark::gateway {

TlsChoice choose_tls(const std::string& mode, const std::string& tls_dir, const std::string& db_path) {
  if (mode == "off" || (mode.empty() && tls_dir.empty())) return {};
  if (!tls_dir.empty()) return {true, tls_dir};
  std::string parent = std::filesystem::path(db_path).parent_path().string();
  return {true, (parent.empty() ? std::string(".") : parent) + "/pki"};
}

ServerTls prepare_tls(const std::string& dir, const std::vector<std::string>& extra_names, bool mtls) {
  pki::Options o;
  o.extra_names = extra_names;
  auto r = pki::ensure_pki(dir, o);
  const auto& p = r.paths;
  if (!r.created.empty())
    spdlog::info("PKI: created {} files in {} (CA {}, server {}, client certificates client-<identity>.crt/.key); "
                 "the CLI needs BULWARK_CA_CERT={} BULWARK_CLIENT_CERT={} BULWARK_CLIENT_KEY={}",
                 r.created.size(), dir, p.ca_cert, p.gateway_cert, p.ca_cert, p.client_cert("cli-admin"), p.client_key("cli-admin"));
  spdlog::info("PKI: {} (CA SHA-256 {})", dir, r.ca_fingerprint);
  return {p.gateway_cert, p.gateway_key, mtls ? p.ca_cert : ""};
}

void configure_server_ctx(SSL_CTX* ctx, const ServerTls& tls) {
  ERR_clear_error();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
    throw Error(Code::kInternal, "require TLS 1.2: " + ossl_errors());
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert_file.c_str()) != 1)
    throw Error(Code::kFailedPrecondition, "load the server certificate " + tls.cert_file + ": " + ossl_errors(), "tls_dir");
  if (SSL_CTX_use_PrivateKey_file(ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    throw Error(Code::kFailedPrecondition,
                "load the server key " + tls.key_file + " for " + tls.cert_file + " (a key of another certificate fails "
                "with 'key values mismatch'): " + ossl_errors(), "tls_dir");
  if (SSL_CTX_check_private_key(ctx) != 1)
    throw Error(Code::kFailedPrecondition, tls.key_file + " is not the key of " + tls.cert_file + ": " + ossl_errors(), "tls_dir");
  if (tls.client_ca_file.empty()) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    return;
  }
  if (SSL_CTX_load_verify_locations(ctx, tls.client_ca_file.c_str(), nullptr) != 1)
    throw Error(Code::kFailedPrecondition, "load the client CA " + tls.client_ca_file + ": " + ossl_errors(), "tls_dir");
  // The CA's name in the CertificateRequest lets clients holding several certificates pick ours.
  STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.client_ca_file.c_str());
  if (!names) throw Error(Code::kFailedPrecondition, "read the client CA " + tls.client_ca_file + ": " + ossl_errors(), "tls_dir");
  SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  SSL_CTX_set_verify_depth(ctx, 2);
}

std::unique_ptr<httplib::Server> make_rest_server(const ServerTls& tls) {
  if (!tls.enabled()) return std::make_unique<httplib::Server>();
  // httplib reports a failed setup only as is_valid() == false: keep the reason to throw it.
  std::string failure;
  auto server = std::make_unique<httplib::SSLServer>([&](SSL_CTX& ctx) {
    try {
      configure_server_ctx(&ctx, tls);
      return true;
    } catch (const Error& e) {
      failure = e.what();
      return false;
    }
  });
  if (!server->is_valid())
    throw Error(Code::kFailedPrecondition, "REST listener TLS: " + (failure.empty() ? ossl_errors() : failure), "tls_dir");
  return server;
}

}  // namespace bulwark::gateway
