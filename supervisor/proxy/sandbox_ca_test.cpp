#include "supervisor/proxy/sandbox_ca.h"

#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "shared/error.h"

using namespace bulwark::proxy;

namespace {

using namespace bulwark::ossl;

X509Ptr parse_pem(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

X509* leaf_of(const std::shared_ptr<SSL_CTX>& ctx) { return SSL_CTX_get0_certificate(ctx.get()); }

std::string cn_of(X509* x) {
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof buf);
  return buf;
}

// The type of each subjectAltName entry (GEN_DNS, GEN_IPADD, ...).
std::vector<int> san_types(X509* x) {
  std::vector<int> types;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) types.push_back(sk_GENERAL_NAME_value(names, i)->type);
  GENERAL_NAMES_free(names);
  return types;
}

// X509_V_OK or the verify error of `leaf` against a store holding only `anchor`.
int verify(X509* leaf, X509* anchor, const char* host = nullptr, const char* ip = nullptr) {
  StorePtr store(X509_STORE_new());
  REQUIRE(X509_STORE_add_cert(store.get(), anchor) == 1);
  StoreCtxPtr sc(X509_STORE_CTX_new());
  REQUIRE(X509_STORE_CTX_init(sc.get(), store.get(), leaf, nullptr) == 1);
  X509_VERIFY_PARAM* p = X509_STORE_CTX_get0_param(sc.get());
  X509_VERIFY_PARAM_set_purpose(p, X509_PURPOSE_SSL_SERVER);
  if (host) REQUIRE(X509_VERIFY_PARAM_set1_host(p, host, 0) == 1);
  if (ip) REQUIRE(X509_VERIFY_PARAM_set1_ip_asc(p, ip) == 1);
  int rc = X509_verify_cert(sc.get()) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(sc.get());
  ERR_clear_error();
  return rc;
}

// The [notBefore, notAfter] span in seconds.
long lifetime(X509* x) {
  int days = 0, secs = 0;
  REQUIRE(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)) == 1);
  return days * 86400L + secs;
}

// A client context that trusts only `ca` and offers h2 before http/1.1, as browsers and curl do.
SslCtxPtr client_trusting(X509* ca, bool offer_http11 = true) {
  SslCtxPtr c(SSL_CTX_new(TLS_client_method()));
  REQUIRE(c);
  REQUIRE(X509_STORE_add_cert(SSL_CTX_get_cert_store(c.get()), ca) == 1);
  SSL_CTX_set_verify(c.get(), SSL_VERIFY_PEER, nullptr);
  static constexpr unsigned char kBoth[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  static constexpr unsigned char kH2[] = {2, 'h', '2'};
  REQUIRE(SSL_CTX_set_alpn_protos(c.get(), offer_http11 ? kBoth : kH2, offer_http11 ? sizeof kBoth : sizeof kH2) == 0);
  return c;
}

struct Handshake {
  bool client_ok = false;
  bool server_ok = false;
  long verify_result = -1;
  std::string alpn;
  std::string sni;   // what the server saw
  std::string data;  // what the client read after the handshake
};

// A real TLS handshake over a socketpair: the server on a thread, the client here. A failed
// client closes its end, which ends the server's wait; the timeouts only stop a broken test.
Handshake handshake(SSL_CTX* server, SSL_CTX* client, const std::function<void(SSL*)>& setup_client) {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  timeval tv{5, 0};
  for (int fd : fds) ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  Handshake r;
  std::thread srv([&] {
    SslPtr s(SSL_new(server));
    SSL_set_fd(s.get(), fds[0]);
    if (SSL_accept(s.get()) == 1) {
      r.server_ok = true;
      if (const char* sni = SSL_get_servername(s.get(), TLSEXT_NAMETYPE_host_name)) r.sni = sni;
      SSL_write(s.get(), "hello", 5);
      SSL_shutdown(s.get());
    }
    ERR_clear_error();
    s.reset();
    ::close(fds[0]);
  });
  {
    SslPtr c(SSL_new(client));
    SSL_set_fd(c.get(), fds[1]);
    setup_client(c.get());
    r.client_ok = SSL_connect(c.get()) == 1;
    r.verify_result = SSL_get_verify_result(c.get());
    const unsigned char* alpn = nullptr;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(c.get(), &alpn, &alpn_len);
    r.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
    if (r.client_ok) {
      char buf[16];
      int n = SSL_read(c.get(), buf, sizeof buf);
      if (n > 0) r.data.assign(buf, static_cast<size_t>(n));
    }
    ERR_clear_error();
  }
  ::close(fds[1]);
  srv.join();
  return r;
}

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "bulwark-ca-XXXXXX").string();
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(path / name) << content;
    return (path / name).string();
  }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("the sandbox CA is a self-signed P-256 CA that can only issue leaves") {
  auto ca = SandboxCa::generate("sb-1234");
  X509Ptr cert = parse_pem(ca.cert_pem());
  REQUIRE(cert);
  CHECK(X509_cmp(cert.get(), ca.cert()) == 0);
  CHECK(X509_check_ca(cert.get()) == 1);
  CHECK(X509_get_pathlen(cert.get()) == 0);
  CHECK(X509_get_key_usage(cert.get()) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  CHECK((X509_get_extension_flags(cert.get()) & EXFLAG_SS) != 0);
  int crit = 0;
  auto* bc = static_cast<BASIC_CONSTRAINTS*>(X509_get_ext_d2i(cert.get(), NID_basic_constraints, &crit, nullptr));
  REQUIRE(bc);
  CHECK(bc->ca);
  CHECK(crit == 1);
  BASIC_CONSTRAINTS_free(bc);
  CHECK(X509_get0_subject_key_id(cert.get()) != nullptr);
  CHECK(cn_of(cert.get()) == "Bulwark sandbox sb-1234 CA");
  CHECK(X509_verify(cert.get(), X509_get0_pubkey(cert.get())) == 1);
  EVP_PKEY* key = X509_get0_pubkey(cert.get());
  CHECK(EVP_PKEY_is_a(key, "EC"));
  CHECK(EVP_PKEY_get_bits(key) == 256);
  CHECK(lifetime(cert.get()) == 30 * 86400L + 3600);
  CHECK(X509_cmp_current_time(X509_get0_notBefore(cert.get())) < 0);
  CHECK(X509_cmp_current_time(X509_get0_notAfter(cert.get())) > 0);
  // 127 random bits: a run of zero high bytes is astronomically unlikely.
  BIGNUM* serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr);
  CHECK(BN_num_bits(serial) > 100);
  BN_free(serial);
  // Each sandbox gets its own key.
  auto other = SandboxCa::generate("sb-1234");
  CHECK(EVP_PKEY_eq(X509_get0_pubkey(other.cert()), key) != 1);
  CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(other.cert()), X509_get0_serialNumber(cert.get())) != 0);
}

TEST_CASE("a long or odd sandbox id still gives a valid CN") {
  auto ca = SandboxCa::generate(std::string(100, 'x') + "\n");
  std::string cn = cn_of(ca.cert());
  CHECK(cn.size() == 64);
  CHECK(cn.rfind("Bulwark sandbox xxx", 0) == 0);
  CHECK(cn.substr(cn.size() - 3) == " CA");
}

TEST_CASE("a leaf verifies against the sandbox CA for its host only") {
  auto ca = SandboxCa::generate("sb-leaf");
  auto ctx = ca.server_ctx_for("api.example.com");
  REQUIRE(ctx);
  X509* leaf = leaf_of(ctx);
  REQUIRE(leaf);
  CHECK(verify(leaf, ca.cert(), "api.example.com") == X509_V_OK);
  CHECK(verify(leaf, ca.cert(), "other.example.com") == X509_V_ERR_HOSTNAME_MISMATCH);
  // Another sandbox's CA does not vouch for it.
  auto stranger = SandboxCa::generate("sb-other");
  CHECK(verify(leaf, stranger.cert(), "api.example.com") == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);

  CHECK(X509_check_ca(leaf) == 0);
  CHECK(X509_get_extended_key_usage(leaf) == XKU_SSL_SERVER);
  CHECK(X509_check_issued(ca.cert(), leaf) == X509_V_OK);
  const ASN1_OCTET_STRING* akid = X509_get0_authority_key_id(leaf);
  REQUIRE(akid);
  CHECK(ASN1_OCTET_STRING_cmp(akid, X509_get0_subject_key_id(ca.cert())) == 0);
  CHECK(lifetime(leaf) == 7 * 86400L + 3600);
  CHECK(cn_of(leaf) == "api.example.com");
  CHECK(san_types(leaf) == std::vector<int>{GEN_DNS});
  CHECK(EVP_PKEY_get_bits(X509_get0_pubkey(leaf)) == 256);
  CHECK(X509_check_ip_asc(leaf, "127.0.0.1", 0) != 1);
}

TEST_CASE("an IP literal gets an IP SAN, not a DNS one") {
  auto ca = SandboxCa::generate("sb-ip");
  X509* v4 = leaf_of(ca.server_ctx_for("10.1.2.3"));
  CHECK(X509_check_ip_asc(v4, "10.1.2.3", 0) == 1);
  CHECK(X509_check_ip_asc(v4, "10.1.2.4", 0) == 0);
  CHECK(san_types(v4) == std::vector<int>{GEN_IPADD});
  CHECK(X509_check_host(v4, "10.1.2.3", 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, nullptr) != 1);
  CHECK(verify(v4, ca.cert(), nullptr, "10.1.2.3") == X509_V_OK);
  CHECK(verify(v4, ca.cert(), nullptr, "10.1.2.4") == X509_V_ERR_IP_ADDRESS_MISMATCH);

  auto v6ctx = ca.server_ctx_for("[2001:DB8::1]");
  X509* v6 = leaf_of(v6ctx);
  CHECK(X509_check_ip_asc(v6, "2001:db8::1", 0) == 1);
  CHECK(san_types(v6) == std::vector<int>{GEN_IPADD});
  CHECK(verify(v6, ca.cert(), nullptr, "2001:db8:0:0::1") == X509_V_OK);
  // Any spelling of the same address is one cache entry.
  CHECK(ca.server_ctx_for("2001:db8:0::1") == v6ctx);
}

TEST_CASE("hosts that are neither DNS names nor IP literals are refused") {
  auto ca = SandboxCa::generate("sb-bad");
  for (const char* h : {"", "*.example.com", "a..b", "exa mple.com", "a,DNS:evil.com", ".", "bad/host"}) {
    CHECK_THROWS_AS_MESSAGE(ca.server_ctx_for(h), bulwark::Error, h);
  }
  CHECK_THROWS_AS(ca.server_ctx_for(std::string(64, 'a') + ".com"), bulwark::Error);  // label over 63
  CHECK(ca.cached_hosts() == 0);
  CHECK_NOTHROW(ca.server_ctx_for("under_score.example.com."));
  CHECK(ca.server_ctx_for("UNDER_score.Example.com") == ca.server_ctx_for("under_score.example.com"));
}

TEST_CASE("the leaf cache: one context per host, least recently used dropped past the bound") {
  auto ca = SandboxCa::generate("sb-cache");
  auto first = ca.server_ctx_for("h0.example.com");
  CHECK(ca.server_ctx_for("h0.example.com") == first);
  CHECK(ca.server_ctx_for("API.example.com") == ca.server_ctx_for("api.example.com"));
  CHECK(ca.server_ctx_for("h1.example.com") != first);

  // Fill the cache to the bound (h0, api, h1 are in it), keeping h1's context alive so a re-mint
  // cannot come back at the same address.
  auto h1 = ca.server_ctx_for("h1.example.com");
  for (size_t i = 2; ca.cached_hosts() < SandboxCa::kMaxCachedHosts; ++i)
    ca.server_ctx_for("h" + std::to_string(i) + ".example.com");
  CHECK(ca.cached_hosts() == SandboxCa::kMaxCachedHosts);
  CHECK(ca.server_ctx_for("h0.example.com") == first);  // now the most recently used
  CHECK(ca.server_ctx_for("api.example.com") != nullptr);
  ca.server_ctx_for("one-more.example.com");  // evicts h1, the least recently used
  CHECK(ca.cached_hosts() == SandboxCa::kMaxCachedHosts);
  CHECK(ca.server_ctx_for("h0.example.com") == first);
  CHECK(ca.server_ctx_for("h1.example.com") != h1);
  // An evicted context still works for whoever holds it.
  CHECK(verify(leaf_of(h1), ca.cert(), "h1.example.com") == X509_V_OK);
}

TEST_CASE("concurrent callers for one host all get the same context") {
  auto ca = SandboxCa::generate("sb-threads");
  std::vector<std::shared_ptr<SSL_CTX>> got(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i)
    threads.emplace_back([&, i] { got[i] = ca.server_ctx_for(i % 2 ? "a.example.com" : "b.example.com"); });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == got[i % 2]);
  CHECK(got[0] != got[1]);
  CHECK(ca.cached_hosts() == 2);
}

TEST_CASE("TLS handshake: the leaf is accepted for its host, with ALPN http/1.1") {
  auto ca = SandboxCa::generate("sb-tls");
  auto server = ca.server_ctx_for("api.example.com");
  auto client = client_trusting(ca.cert());

  auto ok = handshake(server.get(), client.get(), [](SSL* s) { prepare_client_ssl(s, "api.example.com"); });
  CHECK(ok.client_ok);
  CHECK(ok.server_ok);
  CHECK(ok.verify_result == X509_V_OK);
  CHECK(ok.alpn == "http/1.1");
  CHECK(ok.sni == "api.example.com");
  CHECK(ok.data == "hello");

  auto wrong = handshake(server.get(), client.get(), [](SSL* s) { prepare_client_ssl(s, "other.example.com"); });
  CHECK_FALSE(wrong.client_ok);
  CHECK_FALSE(wrong.server_ok);
  CHECK(wrong.verify_result == X509_V_ERR_HOSTNAME_MISMATCH);

  // A client offering only h2 gets no ALPN at all (so it speaks HTTP/1.1), not h2.
  auto h2_only = client_trusting(ca.cert(), false);
  auto h2 = handshake(server.get(), h2_only.get(), [](SSL* s) { prepare_client_ssl(s, "api.example.com"); });
  CHECK(h2.client_ok);
  CHECK(h2.alpn.empty());

  // Nothing older than TLS 1.2 (a TLS 1.1 client would also fail on its own side, so ask).
  CHECK(SSL_CTX_get_min_proto_version(server.get()) == TLS1_2_VERSION);
}

TEST_CASE("TLS handshake to an IP literal: IP verified, no SNI sent") {
  auto ca = SandboxCa::generate("sb-tls-ip");
  auto server = ca.server_ctx_for("127.0.0.1");
  auto client = client_trusting(ca.cert());
  auto ok = handshake(server.get(), client.get(), [](SSL* s) { prepare_client_ssl(s, "127.0.0.1"); });
  CHECK(ok.client_ok);
  CHECK(ok.sni.empty());
  auto wrong = handshake(server.get(), client.get(), [](SSL* s) { prepare_client_ssl(s, "127.0.0.2"); });
  CHECK_FALSE(wrong.client_ok);
  CHECK(wrong.verify_result == X509_V_ERR_IP_ADDRESS_MISMATCH);
}

TEST_CASE("client_ctx: refuses an unknown CA, trusts an operator CA file") {
  auto unknown = SandboxCa::generate("sb-unknown");
  auto server = unknown.server_ctx_for("api.example.com");

  auto system_only = SandboxCa::client_ctx();
  auto refused = handshake(server.get(), system_only.get(), [](SSL* s) { prepare_client_ssl(s, "api.example.com"); });
  CHECK_FALSE(refused.client_ok);
  CHECK_FALSE(refused.server_ok);
  CHECK(refused.verify_result == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);

  TempDir dir;
  auto with_operator = SandboxCa::client_ctx(dir.write("operator.pem", unknown.cert_pem()));
  auto ok = handshake(server.get(), with_operator.get(), [](SSL* s) { prepare_client_ssl(s, "api.example.com"); });
  CHECK(ok.client_ok);
  CHECK(ok.verify_result == X509_V_OK);
  CHECK(ok.alpn == "http/1.1");
  auto wrong = handshake(server.get(), with_operator.get(), [](SSL* s) { prepare_client_ssl(s, "api.example.org"); });
  CHECK_FALSE(wrong.client_ok);
  CHECK(wrong.verify_result == X509_V_ERR_HOSTNAME_MISMATCH);

  CHECK_THROWS_AS(SandboxCa::client_ctx((dir.path / "missing.pem").string()), bulwark::Error);
  CHECK_THROWS_AS(SandboxCa::client_ctx(dir.write("empty.pem", "not a certificate\n")), bulwark::Error);
}

TEST_CASE("the trust bundle holds the system roots and our CA, readable by all") {
  auto ca = SandboxCa::generate("sb-bundle");
  auto system = SandboxCa::generate("pretend-system-root");
  TempDir dir;
  std::string sys_pem = system.cert_pem();
  sys_pem.pop_back();  // no final newline: the bundle must still keep the PEMs apart
  std::string sys_path = dir.write("system.crt", sys_pem);

  std::string path = ca.write_trust_bundle(dir.path.string(), sys_path);
  CHECK(path == (dir.path / "ca-bundle.crt").string());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0644);
  std::string content = slurp(path);
  CHECK(content.find(sys_pem) == 0);
  CHECK(content.find(ca.cert_pem()) != std::string::npos);

  // Both roots load from it, as a TLS stack would load them.
  StorePtr store(X509_STORE_new());
  REQUIRE(X509_STORE_load_file(store.get(), path.c_str()) == 1);
  CHECK(sk_X509_OBJECT_num(X509_STORE_get0_objects(store.get())) == 2);

  // Rewritten in place; no temp files left behind.
  CHECK(ca.write_trust_bundle(dir.path.string(), "") == path);
  CHECK(slurp(path).find(sys_pem) == std::string::npos);
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path), std::filesystem::directory_iterator()) == 2);

  CHECK_THROWS_AS(ca.write_trust_bundle(dir.path.string(), (dir.path / "nope").string()), bulwark::Error);
  CHECK_THROWS_AS(ca.write_trust_bundle((dir.path / "no-such-dir").string(), ""), bulwark::Error);
}

TEST_CASE("trust_env points every TLS stack at the bundle") {
  auto env = trust_env("/run/bulwark/ca-bundle.crt");
  std::set<std::string> keys;
  for (const auto& [k, v] : env) {
    keys.insert(k);
    CHECK(v == "/run/bulwark/ca-bundle.crt");
  }
  CHECK(keys == std::set<std::string>{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
                                      "GIT_SSL_CAINFO"});
}
