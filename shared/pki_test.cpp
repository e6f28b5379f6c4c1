#include "shared/pki.h"

#include <doctest/doctest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "shared/error.h"
#include "shared/util.h"

using namespace bulwark;

namespace {

struct X509Del {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Del>;

X509Ptr load(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  REQUIRE_MESSAGE(f, "cannot open " << path);
  X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  REQUIRE_MESSAGE(x, "no certificate in " << path);
  return X509Ptr(x);
}

// X509_verify_cert of `leaf` against `ca` alone, for `purpose`; the error string, "" when it verifies.
std::string verify(const std::string& ca, const std::string& leaf, int purpose) {
  X509Ptr c = load(ca), l = load(leaf);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_add_cert(store, c.get());
  X509_STORE_CTX_init(ctx, store, l.get(), nullptr);
  X509_STORE_CTX_set_purpose(ctx, purpose);
  std::string err = X509_verify_cert(ctx) == 1 ? "" : X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  return err;
}

int mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    out[e.path().filename().string()] = slurp(e.path().string());
  return out;
}

std::string cn_of(const std::string& path) {
  X509Ptr x = load(path);
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(x.get()), NID_commonName, buf, sizeof buf);
  return buf;
}

std::string error_of(const std::string& dir, const pki::Options& o = {}) {
  try {
    pki::ensure_pki(dir, o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("ensure_pki creates a CA, server and client certificates that verify") {
  TempDir tmp("pki-test");
  const std::string dir = tmp.file("pki");
  pki::Options o;
  o.extra_names = {"gw.example.test", "10.1.2.3", "[fd00::7]"};
  o.client_identities = {"cli-admin", "gateway", "scheduler"};
  auto r = pki::ensure_pki(dir, o);

  CHECK(mode_of(dir) == 0700);
  CHECK(r.created.size() == 2 + 4 + 6);  // CA, two servers, three clients; a cert and a key each
  CHECK(r.ca_fingerprint.size() == 32 * 3 - 1);
  CHECK(r.ca_fingerprint == pki::cert_fingerprint(r.paths.ca_cert));
  for (const auto& f : r.created) {
    bool key = f.size() > 4 && f.substr(f.size() - 4) == ".key";
    CHECK_MESSAGE(mode_of(f) == (key ? 0600 : 0644), f);
  }

  const auto& p = r.paths;
  CHECK(verify(p.ca_cert, p.gateway_cert, X509_PURPOSE_SSL_SERVER) == "");
  CHECK(verify(p.ca_cert, p.nats_cert, X509_PURPOSE_SSL_SERVER) == "");
  CHECK(verify(p.ca_cert, p.client_cert("cli-admin"), X509_PURPOSE_SSL_CLIENT) == "");
  // A client certificate cannot serve, and the gateway's server certificate cannot be a client.
  CHECK(verify(p.ca_cert, p.client_cert("cli-admin"), X509_PURPOSE_SSL_SERVER) != "");
  CHECK(verify(p.ca_cert, p.gateway_cert, X509_PURPOSE_SSL_CLIENT) != "");
  CHECK(cn_of(p.client_cert("scheduler")) == "scheduler");
  CHECK(cn_of(p.ca_cert) == "Bulwark CA");

  for (const auto& crt : {p.gateway_cert, p.nats_cert}) {
    X509Ptr x = load(crt);
    CHECK(X509_check_host(x.get(), "localhost", 0, 0, nullptr) == 1);
    CHECK(X509_check_host(x.get(), "gw.example.test", 0, 0, nullptr) == 1);
    CHECK(X509_check_host(x.get(), "other.example.test", 0, 0, nullptr) != 1);
    CHECK(X509_check_ip_asc(x.get(), "127.0.0.1", 0) == 1);
    CHECK(X509_check_ip_asc(x.get(), "::1", 0) == 1);
    CHECK(X509_check_ip_asc(x.get(), "10.1.2.3", 0) == 1);
    CHECK(X509_check_ip_asc(x.get(), "fd00::7", 0) == 1);
    CHECK(X509_check_ip_asc(x.get(), "10.1.2.4", 0) != 1);
    std::string host = hostname();
    if (is_dns_label(host)) CHECK(X509_check_host(x.get(), host.c_str(), 0, 0, nullptr) == 1);
  }
  // Client certificates the default list names.
  CHECK(std::find(pki::default_client_identities().begin(), pki::default_client_identities().end(), "cli-admin") !=
        pki::default_client_identities().end());
}

TEST_CASE("a second call changes nothing; a new identity is added with the same CA") {
  TempDir tmp("pki-test");
  const std::string dir = tmp.file("pki");
  pki::Options o;
  o.client_identities = {"cli-admin"};
  auto first = pki::ensure_pki(dir, o);
  auto before = snapshot(dir);
  auto again = pki::ensure_pki(dir, o);
  CHECK(again.created.empty());
  CHECK(again.ca_fingerprint == first.ca_fingerprint);
  CHECK(snapshot(dir) == before);

  o.client_identities = {"cli-admin", "driver-podman"};
  auto third = pki::ensure_pki(dir, o);
  CHECK(third.created == std::vector<std::string>{third.paths.client_key("driver-podman"),
                                                   third.paths.client_cert("driver-podman")});
  CHECK(third.ca_fingerprint == first.ca_fingerprint);
  CHECK(verify(third.paths.ca_cert, third.paths.client_cert("driver-podman"), X509_PURPOSE_SSL_CLIENT) == "");

  // A deleted pair is regenerated (rotation), signed by the same CA.
  std::string old = slurp(third.paths.gateway_cert);
  std::filesystem::remove(third.paths.gateway_cert);
  std::filesystem::remove(third.paths.gateway_key);
  auto fourth = pki::ensure_pki(dir, o);
  CHECK(fourth.created.size() == 2);
  CHECK(slurp(fourth.paths.gateway_cert) != old);
  CHECK(verify(fourth.paths.ca_cert, fourth.paths.gateway_cert, X509_PURPOSE_SSL_SERVER) == "");

  // Without ca.key, an existing valid set still loads; only issuing needs the key.
  std::filesystem::remove(fourth.paths.ca_key);
  CHECK(error_of(dir, o) == "");
  o.client_identities.push_back("driver-vm");
  std::string err = error_of(dir, o);
  CHECK(err.find("ca.key") != std::string::npos);
  CHECK(err.find("missing") != std::string::npos);
}

TEST_CASE("mismatched, foreign, partial and loose files are clear errors naming the file") {
  TempDir tmp("pki-test");
  const std::string dir = tmp.file("pki"), other = tmp.file("other");
  pki::Options o;
  o.client_identities = {"cli-admin"};
  auto r = pki::ensure_pki(dir, o);
  auto theirs = pki::ensure_pki(other, o);
  const auto& p = r.paths;

  SUBCASE("a key that is not the certificate's") {
    std::filesystem::remove(p.gateway_key);
    std::filesystem::copy_file(p.nats_key, p.gateway_key);
    std::string err = error_of(dir, o);
    CHECK(err.find(p.gateway_key + " does not match " + p.gateway_cert) != std::string::npos);
    CHECK(err.find("delete") != std::string::npos);
  }
  SUBCASE("a certificate from another CA") {
    std::filesystem::remove(p.client_cert("cli-admin"));
    std::filesystem::remove(p.client_key("cli-admin"));
    std::filesystem::copy_file(theirs.paths.client_cert("cli-admin"), p.client_cert("cli-admin"));
    std::filesystem::copy_file(theirs.paths.client_key("cli-admin"), p.client_key("cli-admin"));
    std::string err = error_of(dir, o);
    CHECK(err.find(p.client_cert("cli-admin") + " does not verify against " + p.ca_cert) != std::string::npos);
  }
  SUBCASE("a certificate without its key") {
    std::filesystem::remove(p.nats_key);
    std::string err = error_of(dir, o);
    CHECK(err.find(p.nats_cert + " exists without " + p.nats_key) != std::string::npos);
  }
  SUBCASE("a missing CA with leaves still there") {
    std::filesystem::remove(p.ca_cert);
    std::string err = error_of(dir, o);
    CHECK(err.find(p.ca_cert + " is missing") != std::string::npos);
  }
  SUBCASE("a server certificate without a newly requested name") {
    pki::Options more = o;
    more.extra_names = {"new.example.test"};
    std::string err = error_of(dir, more);
    CHECK(err.find(p.gateway_cert + " does not cover new.example.test") != std::string::npos);
  }
  SUBCASE("a private key readable by others") {
    REQUIRE(::chmod(p.gateway_key.c_str(), 0644) == 0);
    std::string err = error_of(dir, o);
    CHECK(err.find(p.gateway_key + " is readable by other users") != std::string::npos);
  }
  SUBCASE("garbage in a certificate file") {
    std::filesystem::remove(p.gateway_cert);
    std::ofstream(p.gateway_cert) << "not a certificate\n";
    std::string err = error_of(dir, o);
    CHECK(err.find(p.gateway_cert + " holds no PEM certificate") != std::string::npos);
  }
  SUBCASE("bad options") {
    pki::Options bad = o;
    bad.client_identities = {"Not Valid"};
    CHECK(error_of(dir, bad).find("client identity 'Not Valid'") != std::string::npos);
    bad = o;
    bad.extra_names = {"bad name!"};
    CHECK(error_of(dir, bad).find("not a DNS name or IP") != std::string::npos);
  }
}

TEST_CASE("an expired certificate is refused with what to do") {
  TempDir tmp("pki-test");
  const std::string dir = tmp.file("pki");
  pki::Options o;
  o.client_identities = {"cli-admin"};
  auto r = pki::ensure_pki(dir, o);
  // Re-sign the CLI's certificate with a validity that ended yesterday, using the real CA key.
  FILE* f = std::fopen(r.paths.ca_key.c_str(), "r");
  REQUIRE(f);
  EVP_PKEY* ca_key = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  REQUIRE(ca_key);
  X509Ptr leaf = load(r.paths.client_cert("cli-admin"));
  time_t now = ::time(nullptr);
  X509_time_adj_ex(X509_getm_notBefore(leaf.get()), -3, 0, &now);
  X509_time_adj_ex(X509_getm_notAfter(leaf.get()), -1, 0, &now);
  REQUIRE(X509_sign(leaf.get(), ca_key, EVP_sha256()) > 0);
  EVP_PKEY_free(ca_key);
  std::filesystem::remove(r.paths.client_cert("cli-admin"));
  f = std::fopen(r.paths.client_cert("cli-admin").c_str(), "w");
  REQUIRE(f);
  PEM_write_X509(f, leaf.get());
  std::fclose(f);

  std::string err = error_of(dir, o);
  CHECK(err.find(r.paths.client_cert("cli-admin") + " has expired") != std::string::npos);
  CHECK(err.find("delete") != std::string::npos);
  try {
    pki::check_cert_and_key(r.paths.client_cert("cli-admin"), r.paths.client_key("cli-admin"), "client_cert",
                            "client_key");
    FAIL("an expired client certificate passed check_cert_and_key");
  } catch (const Error& e) {
    CHECK(e.field() == "client_cert");
    CHECK(std::string(e.what()).find("has expired") != std::string::npos);
  }
}

TEST_CASE("check_cert_and_key and check_ca_file name the flag at fault") {
  TempDir tmp("pki-test");
  pki::Options o;
  o.client_identities = {"cli-admin"};
  auto r = pki::ensure_pki(tmp.file("pki"), o);
  CHECK_NOTHROW(pki::check_cert_and_key(r.paths.client_cert("cli-admin"), r.paths.client_key("cli-admin"), "c", "k"));
  CHECK_NOTHROW(pki::check_ca_file(r.paths.ca_cert, "ca_cert"));
  auto field_of = [](auto fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      return e.field() + ": " + e.what();
    }
    return "";
  };
  std::string missing = tmp.file("nope.crt");
  CHECK(field_of([&] { pki::check_ca_file(missing, "ca_cert"); }).rfind("ca_cert: open certificate " + missing, 0) == 0);
  CHECK(field_of([&] { pki::check_cert_and_key(missing, r.paths.client_key("cli-admin"), "client_cert", "k"); })
            .rfind("client_cert:", 0) == 0);
  CHECK(field_of([&] { pki::check_cert_and_key(r.paths.client_cert("cli-admin"), r.paths.ca_cert, "c", "client_key"); })
            .rfind("client_key:", 0) == 0);
  CHECK(field_of([&] { pki::check_cert_and_key(r.paths.client_cert("cli-admin"), r.paths.gateway_key, "c", "client_key"); })
            .find("is not the key of") != std::string::npos);
}
