#include "supervisor/proxy/transparent.h"

#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <memory>
#include <string>

using namespace bulwark::proxy;

namespace {

// A real ClientHello, as OpenSSL's client sends it (memory BIOs: nothing on the network).
std::string openssl_client_hello(const char* sni, int max_version = TLS1_3_VERSION) {
  std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  REQUIRE(ctx);
  SSL_CTX_set_max_proto_version(ctx.get(), max_version);
  std::unique_ptr<SSL, void (*)(SSL*)> ssl(SSL_new(ctx.get()), SSL_free);
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), rbio, wbio);  // ssl owns both
  if (sni) SSL_set_tlsext_host_name(ssl.get(), sni);
  SSL_set_connect_state(ssl.get());
  CHECK(SSL_do_handshake(ssl.get()) <= 0);  // wants to read the server's answer
  char* data = nullptr;
  long n = BIO_get_mem_data(wbio, &data);
  REQUIRE(n > 0);
  return std::string(data, static_cast<size_t>(n));
}

}  // namespace

TEST_CASE("SNI from real OpenSSL ClientHellos: TLS 1.3 and 1.2, with and without a name") {
  for (int v : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    CAPTURE(v);
    std::string hello = openssl_client_hello("API.Example.COM", v);
    auto s = sniff_first_bytes(hello, false);
    CHECK(s.kind == SniffKind::kTls);
    CHECK(s.name == "api.example.com");
    CHECK(s.error.empty());
    auto none = sniff_first_bytes(openssl_client_hello(nullptr, v), false);
    CHECK(none.kind == SniffKind::kTls);
    CHECK(none.name.empty());
    CHECK(none.error.empty());
  }
}

TEST_CASE("a ClientHello arriving in pieces is waited for; cut short for good it gives no name") {
  std::string hello = openssl_client_hello("a.example");
  for (size_t cut : {size_t{1}, size_t{4}, size_t{5}, size_t{9}, hello.size() / 2, hello.size() - 1}) {
    CAPTURE(cut);
    CHECK(sniff_first_bytes(hello.substr(0, cut), false).kind == SniffKind::kIncomplete);
    auto f = sniff_first_bytes(hello.substr(0, cut), true);
    CHECK(f.kind == SniffKind::kTls);
    CHECK(f.name.empty());
  }
  // Bytes after the hello (an early data record) do not matter.
  CHECK(sniff_first_bytes(hello + "\x17\x03\x03\x00\x01x", false).name == "a.example");
}

TEST_CASE("a ClientHello split over two records is joined") {
  std::string hello = openssl_client_hello("split.example");
  std::string payload = hello.substr(5);
  size_t half = payload.size() / 2;
  auto record = [](std::string_view p) {
    std::string r = "\x16\x03\x01";
    r += static_cast<char>(p.size() >> 8);
    r += static_cast<char>(p.size() & 0xff);
    return r + std::string(p);
  };
  std::string two = record(payload.substr(0, half)) + record(payload.substr(half));
  CHECK(sniff_first_bytes(two, false).name == "split.example");
}

TEST_CASE("every truncation and corruption of a hello is refused without reading past the bytes") {
  std::string hello = openssl_client_hello("fuzz.example");
  // Flip each byte in turn: the parser must neither crash nor read out of bounds (ASan runs this),
  // and anything it calls a name must be a valid host name.
  for (size_t i = 0; i < hello.size(); ++i) {
    for (unsigned char x : {0x00, 0xff, 0x80, 0x01}) {
      std::string bad = hello;
      bad[i] = static_cast<char>(x);
      auto s = sniff_first_bytes(bad, true);
      if (!s.name.empty()) CHECK(valid_host_name(s.name));
    }
  }
  std::string r = "\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00";  // a ServerHello type
  CHECK(sniff_first_bytes(r, true).name.empty());
  CHECK_FALSE(sniff_first_bytes(r, true).error.empty());
  CHECK(sniff_first_bytes(std::string("\x16\x03\x01\x00\x00", 5), true).kind == SniffKind::kTls);
}

TEST_CASE("a bad SNI is no name: not a host name, two names") {
  std::string hello = openssl_client_hello("abc.example");
  std::string bad = hello;
  size_t at = bad.find("abc.example");
  REQUIRE(at != std::string::npos);
  bad[at + 1] = '/';
  auto s = sniff_first_bytes(bad, false);
  CHECK(s.kind == SniffKind::kTls);
  CHECK(s.name.empty());
  CHECK(s.error == "the SNI is not a valid host name");
}

TEST_CASE("plain HTTP: the Host header, port stripped; none, two, or junk give no name") {
  CHECK(sniff_first_bytes("GET / HTTP/1.1\r\nHost: Example.com:8080\r\n\r\n", false).name == "example.com");
  CHECK(sniff_first_bytes("GET / HTTP/1.1\r\nhost:a.example\r\nX: y\r\n\r\nbody", false).name == "a.example");
  CHECK(sniff_first_bytes("POST /x HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", false).name == "::1");
  CHECK(sniff_first_bytes("GET / HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n", false).name == "192.0.2.1");
  CHECK(sniff_first_bytes("GET / HTTP/1.1\r\nHost: a\r\n", false).kind == SniffKind::kIncomplete);
  CHECK(sniff_first_bytes("GE", false).kind == SniffKind::kIncomplete);
  auto none = sniff_first_bytes("GET / HTTP/1.0\r\n\r\n", false);
  CHECK(none.kind == SniffKind::kHttp);
  CHECK(none.name.empty());
  CHECK(none.error == "no Host header");
  auto two = sniff_first_bytes("GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", false);
  CHECK(two.name.empty());
  CHECK(two.error == "more than one Host header");
  CHECK(sniff_first_bytes("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", false).name.empty());
  CHECK(sniff_first_bytes("GET / HTTP/1.1\r\nHost: a\r\n", true).kind == SniffKind::kHttp);
}

TEST_CASE("anything else is opaque: decided by the original address") {
  CHECK(sniff_first_bytes("*1\r\n$4\r\nPING\r\n", false).kind == SniffKind::kOpaque);  // Redis
  CHECK(sniff_first_bytes(std::string("\x00\x00\x00\x08\x04\xd2\x16\x2f", 8), false).kind == SniffKind::kOpaque);
  CHECK(sniff_first_bytes("SSH-2.0-x\r\n", false).kind == SniffKind::kOpaque);
  CHECK(sniff_first_bytes("", true).kind == SniffKind::kOpaque);
  CHECK(sniff_first_bytes("", false).kind == SniffKind::kIncomplete);
}

TEST_CASE("valid_host_name") {
  CHECK(valid_host_name("a.b-c_d.example"));
  CHECK_FALSE(valid_host_name(""));
  CHECK_FALSE(valid_host_name(".a"));
  CHECK_FALSE(valid_host_name("a..b"));
  CHECK_FALSE(valid_host_name("a."));
  CHECK_FALSE(valid_host_name(std::string(64, 'a')));
  CHECK(valid_host_name(std::string(63, 'a')));
  CHECK_FALSE(valid_host_name(std::string_view("a\0b", 3)));
}

TEST_CASE("name_leads_to: the SNI/Host name must resolve to the original destination") {
  auto a = [](const char* s) { return asio::ip::make_address(s); };
  CHECK(name_leads_to({a("192.0.2.1"), a("192.0.2.2")}, a("192.0.2.2")));
  CHECK_FALSE(name_leads_to({a("192.0.2.1")}, a("203.0.113.9")));  // an allowed name, another address
  CHECK_FALSE(name_leads_to({}, a("192.0.2.1")));                   // the name does not resolve
  CHECK(name_leads_to({a("::ffff:192.0.2.1")}, a("192.0.2.1")));
  CHECK(name_leads_to({a("192.0.2.1")}, a("::ffff:192.0.2.1")));
  CHECK_FALSE(name_leads_to({a("2001:db8::1")}, a("192.0.2.1")));
}
