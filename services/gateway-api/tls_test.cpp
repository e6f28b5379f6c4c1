#include "services/gateway-api/tls.h"

#include <doctest/doctest.h>
#include <httplib.h>
#include <openssl/ssl.h>

#include "shared/error.h"
#include "shared/pki.h"
#include "shared/util.h"

using namespace bulwark;
using namespace bulwark::gateway;

TEST_CASE("choose_tls: off by default, on with auto or a --tls-dir") {
  CHECK_FALSE(choose_tls("", "", "/var/lib/bulwark/gateway.db").on);
  CHECK_FALSE(choose_tls("off", "/etc/bulwark/pki", "/var/lib/bulwark/gateway.db").on);
  auto a = choose_tls("auto", "", "/var/lib/bulwark/gateway.db");
  CHECK(a.on);
  CHECK(a.dir == "/var/lib/bulwark/pki");
  CHECK(choose_tls("auto", "", "gateway.db").dir == "./pki");
  auto d = choose_tls("", "/etc/bulwark/pki", "/var/lib/bulwark/gateway.db");
  CHECK(d.on);
  CHECK(d.dir == "/etc/bulwark/pki");
  CHECK(choose_tls("auto", "/x", "/y/gateway.db").dir == "/x");
}

TEST_CASE("configure_server_ctx: mTLS asks for a client certificate; a bad file is named") {
  TempDir tmp("gw-tls-test");
  pki::Options o;
  o.client_identities = {"cli-admin"};
  auto p = pki::ensure_pki(tmp.file("pki"), o).paths;
  struct CtxFree {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
  };
  std::unique_ptr<SSL_CTX, CtxFree> ctx(SSL_CTX_new(TLS_server_method()));
  REQUIRE(ctx);

  configure_server_ctx(ctx.get(), {p.gateway_cert, p.gateway_key, p.ca_cert});
  CHECK(SSL_CTX_get_verify_mode(ctx.get()) == (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT));
  CHECK(SSL_CTX_get_min_proto_version(ctx.get()) == TLS1_2_VERSION);
  CHECK(sk_X509_NAME_num(SSL_CTX_get_client_CA_list(ctx.get())) == 1);

  std::unique_ptr<SSL_CTX, CtxFree> token_only(SSL_CTX_new(TLS_server_method()));
  configure_server_ctx(token_only.get(), {p.gateway_cert, p.gateway_key, ""});
  CHECK(SSL_CTX_get_verify_mode(token_only.get()) == SSL_VERIFY_NONE);

  auto error_of = [&](const ServerTls& t) -> std::string {
    std::unique_ptr<SSL_CTX, CtxFree> c(SSL_CTX_new(TLS_server_method()));
    try {
      configure_server_ctx(c.get(), t);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  CHECK(error_of({tmp.file("none.crt"), p.gateway_key, ""}).find("load the server certificate " + tmp.file("none.crt")) == 0);
  std::string mismatch = error_of({p.gateway_cert, p.nats_key, ""});
  CHECK_MESSAGE(mismatch.find("load the server key " + p.nats_key + " for " + p.gateway_cert) == 0, mismatch);
  CHECK_MESSAGE(mismatch.find("key values mismatch") != std::string::npos, mismatch);
  CHECK(error_of({p.gateway_cert, p.gateway_key, tmp.file("ca.pem")}).find("load the client CA " + tmp.file("ca.pem")) == 0);

  CHECK(make_rest_server({})->is_valid());
  CHECK(make_rest_server({p.gateway_cert, p.gateway_key, p.ca_cert})->is_valid());
  CHECK_THROWS_WITH_AS(make_rest_server({p.gateway_cert, p.nats_key, p.ca_cert}),
                       doctest::Contains("REST listener TLS"), Error);
}
