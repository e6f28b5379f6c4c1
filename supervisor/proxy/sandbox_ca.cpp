#include "supervisor/proxy/sandbox_ca.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <list>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "shared/error.h"
#include "shared/host_name.h"
#include "shared/openssl_ptr.h"
#include "shared/pki.h"

namespace bulwark::proxy {
namespace {

using namespace ossl;
using GenNamesPtr = std::unique_ptr<GENERAL_NAMES, OsslFree<GENERAL_NAMES_free>>;
using GenNamePtr = std::unique_ptr<GENERAL_NAME, OsslFree<GENERAL_NAME_free>>;
using Ia5Ptr = std::unique_ptr<ASN1_IA5STRING, OsslFree<ASN1_IA5STRING_free>>;
using OctetPtr = std::unique_ptr<ASN1_OCTET_STRING, OsslFree<ASN1_OCTET_STRING_free>>;
using Clock = std::chrono::steady_clock;

constexpr long kHour = 3600;
constexpr long kDay = 24 * kHour;
constexpr long kBackdate = kHour;  // tolerate an agent clock somewhat behind ours
constexpr long kCaLifetime = 30 * kDay;
constexpr long kLeafLifetime = 7 * kDay;
constexpr size_t kMaxCn = 64;  // X.520 upper bound on commonName; OpenSSL refuses longer

[[noreturn]] void fail(const std::string& what, Code code = Code::kInternal) {
  throw Error(code, what + ": " + ossl_errors());
}

// Most OpenSSL calls return 1 on success; some (X509_sign, BN_to_ASN1_INTEGER) a positive size
// or a pointer, which callers test themselves.
void check(long rc, const char* what) {
  if (rc != 1) fail(what);
}

// A host as certificates and verification want it: a lower-case DNS name without a trailing
// dot, or a canonical IP literal (so "[2001:DB8::1]" and "2001:db8:0::1" share one cache entry).
struct Host {
  std::string name;
  bool ip = false;
};

Host normalize_host(const std::string& raw) {
  auto h = parse_host_name(raw);
  if (!h) throw Error(Code::kInvalidArgument, "not a DNS name or IP literal: '" + raw + "'", "host");
  return {h->text, h->ip};
}


// From kBackdate ago for `lifetime` seconds from now, both ends from one reading of the clock.
void set_validity(X509* x, long lifetime) {
  time_t now = ::time(nullptr);
  if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, -kBackdate, &now) ||
      !X509_time_adj_ex(X509_getm_notAfter(x), 0, lifetime, &now))
    fail("set a certificate's validity");
}

void add_ext(X509* subject, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, subject, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
  if (!ext) fail(std::string("build the ") + OBJ_nid2sn(nid) + " extension");
  // X509_add_ext copies the extension.
  if (!X509_add_ext(subject, ext.get(), -1)) fail(std::string("add the ") + OBJ_nid2sn(nid) + " extension");
}

void add_cn(X509_NAME* name, const std::string& cn) {
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.data()),
                                   static_cast<int>(cn.size()), -1, 0),
        "set a certificate common name");
}

void add_san(X509* x, const Host& host) {
  GenNamesPtr names(GENERAL_NAMES_new());
  GenNamePtr name(GENERAL_NAME_new());
  if (!names || !name) fail("allocate a subjectAltName");
  if (host.ip) {
    OctetPtr ip(a2i_IPADDRESS(host.name.c_str()));
    if (!ip) fail("encode IP address " + host.name);
    GENERAL_NAME_set0_value(name.get(), GEN_IPADD, ip.release());
  } else {
    Ia5Ptr dns(ASN1_IA5STRING_new());
    if (!dns || !ASN1_STRING_set(dns.get(), host.name.data(), static_cast<int>(host.name.size())))
      fail("encode DNS name " + host.name);
    GENERAL_NAME_set0_value(name.get(), GEN_DNS, dns.release());
  }
  if (!sk_GENERAL_NAME_push(names.get(), name.get())) fail("build a subjectAltName");
  name.release();  // the stack owns it now
  check(X509_add1_ext_i2d(x, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT), "add the subjectAltName");
}

// ALPN: pick "http/1.1" when offered, otherwise decline (no ALPN means HTTP/1.1 to clients), so
// an agent never negotiates HTTP/2, which the proxy's request inspection does not parse.
int select_http11(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen,
                  void*) {
  static constexpr char kHttp11[] = "http/1.1";
  constexpr unsigned kLen = sizeof kHttp11 - 1;
  for (unsigned i = 0; i < inlen;) {
    unsigned len = in[i];
    if (i + 1 + len > inlen) break;  // malformed list
    if (len == kLen && std::memcmp(in + i + 1, kHttp11, kLen) == 0) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(kLen);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

std::shared_ptr<SSL_CTX> to_shared(SslCtxPtr ctx) {
  // If the shared_ptr's control block cannot be allocated, it frees the context itself.
  return std::shared_ptr<SSL_CTX>(ctx.release(), SSL_CTX_free);
}

// Closes a descriptor and removes a temp file unless released.
struct TempFile {
  int fd = -1;
  std::string path;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!path.empty()) ::unlink(path.c_str());
  }
};

}  // namespace

struct SandboxCa::Impl {
  std::string id;
  PkeyPtr ca_key;  // never serialized: it lives and dies with this object
  X509Ptr ca_cert;
  std::string pem;
  PkeyPtr leaf_key;  // one key for every leaf of this CA: minting then costs one signature

  struct Entry {
    std::shared_ptr<SSL_CTX> ctx;
    Clock::time_point minted;
    std::list<std::string>::iterator lru;
  };
  mutable std::mutex mu;
  std::list<std::string> lru;  // most recently used first
  std::unordered_map<std::string, Entry> cache;

  std::shared_ptr<SSL_CTX> mint(const Host& host) const;
};

SandboxCa::SandboxCa(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SandboxCa::SandboxCa(SandboxCa&&) noexcept = default;
SandboxCa& SandboxCa::operator=(SandboxCa&&) noexcept = default;
SandboxCa::~SandboxCa() = default;

SandboxCa SandboxCa::generate(const std::string& sandbox_id) {
  ERR_clear_error();
  auto impl = std::make_unique<Impl>();
  impl->id = sandbox_id;
  impl->ca_key = pki::new_p256_key();
  impl->leaf_key = pki::new_p256_key();

  X509Ptr ca(X509_new());
  if (!ca) fail("allocate the sandbox CA certificate");
  X509* x = ca.get();
  check(X509_set_version(x, X509_VERSION_3), "set the CA certificate version");
  pki::set_random_serial(x);
  set_validity(x, kCaLifetime);
  // The CN names the sandbox so a person looking at a certificate knows where it came from;
  // printable ASCII only, shortened to the 64-character limit.
  std::string id;
  for (char c : sandbox_id) id += (c >= 0x20 && c < 0x7f) ? c : '?';
  const std::string prefix = "Bulwark sandbox ", suffix = " CA";
  if (prefix.size() + id.size() + suffix.size() > kMaxCn) id.resize(kMaxCn - prefix.size() - suffix.size());
  X509_NAME* name = X509_get_subject_name(x);
  const unsigned char org[] = "Bulwark";
  check(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, org, -1, -1, 0), "set the CA organization");
  add_cn(name, prefix + id + suffix);
  check(X509_set_issuer_name(x, name), "set the CA issuer");
  check(X509_set_pubkey(x, impl->ca_key.get()), "set the CA public key");
  add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(x, x, NID_subject_key_identifier, "hash");
  if (X509_sign(x, impl->ca_key.get(), EVP_sha256()) <= 0) fail("self-sign the sandbox CA");

  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) fail("allocate a memory BIO");
  check(PEM_write_bio_X509(bio.get(), x), "encode the CA certificate as PEM");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  impl->pem.assign(data, static_cast<size_t>(len));
  impl->ca_cert = std::move(ca);
  return SandboxCa(std::move(impl));
}

const std::string& SandboxCa::sandbox_id() const { return impl_->id; }
std::string SandboxCa::cert_pem() const { return impl_->pem; }
X509* SandboxCa::cert() const { return impl_->ca_cert.get(); }

std::shared_ptr<SSL_CTX> SandboxCa::Impl::mint(const Host& host) const {
  X509* ca = ca_cert.get();
  if (X509_cmp_current_time(X509_get0_notAfter(ca)) <= 0)
    throw Error(Code::kFailedPrecondition, "the CA of sandbox " + id + " has expired: restart the sandbox");
  X509Ptr leaf(X509_new());
  if (!leaf) fail("allocate a leaf certificate");
  X509* x = leaf.get();
  check(X509_set_version(x, X509_VERSION_3), "set the leaf certificate version");
  pki::set_random_serial(x);
  set_validity(x, kLeafLifetime);
  // A leaf must not outlive its issuer: verifiers would reject it in that last stretch anyway.
  if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca)) > 0)
    check(X509_set1_notAfter(x, X509_get0_notAfter(ca)), "cap the leaf validity");
  // Clients match on the SAN; the CN is there for people (and only when it fits).
  if (host.name.size() <= kMaxCn) add_cn(X509_get_subject_name(x), host.name);
  check(X509_set_issuer_name(x, X509_get_subject_name(ca)), "set the leaf issuer");
  check(X509_set_pubkey(x, leaf_key.get()), "set the leaf public key");
  add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE");
  add_ext(x, ca, NID_key_usage, "critical,digitalSignature");
  add_ext(x, ca, NID_ext_key_usage, "serverAuth");
  add_ext(x, ca, NID_subject_key_identifier, "hash");
  add_ext(x, ca, NID_authority_key_identifier, "keyid:always");
  add_san(x, host);
  if (X509_sign(x, ca_key.get(), EVP_sha256()) <= 0) fail("sign the leaf for " + host.name);

  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) fail("create a TLS server context");
  check(SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION), "require TLS 1.2");
  check(SSL_CTX_use_certificate(ctx.get(), x), "load the leaf certificate");
  check(SSL_CTX_use_PrivateKey(ctx.get(), leaf_key.get()), "load the leaf key");
  check(SSL_CTX_check_private_key(ctx.get()), "match the leaf key to its certificate");
  // Renegotiation only adds attack surface to an interception point.
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_alpn_select_cb(ctx.get(), select_http11, nullptr);
  return to_shared(std::move(ctx));
}

std::shared_ptr<SSL_CTX> SandboxCa::server_ctx_for(const std::string& host) {
  Host h = normalize_host(host);
  Impl& im = *impl_;
  auto fresh = [](const Impl::Entry& e) { return Clock::now() - e.minted < kLeafRefreshAge; };
  auto touch = [&im](Impl::Entry& e) { im.lru.splice(im.lru.begin(), im.lru, e.lru); };
  {
    std::lock_guard lock(im.mu);
    if (auto it = im.cache.find(h.name); it != im.cache.end() && fresh(it->second)) {
      touch(it->second);
      return it->second.ctx;
    }
  }
  // Minted outside the lock so one slow mint does not stall every other host's lookups; if two
  // threads race on one host, the first insert wins and both get it.
  ERR_clear_error();
  auto ctx = im.mint(h);
  std::lock_guard lock(im.mu);
  auto it = im.cache.find(h.name);
  if (it != im.cache.end()) {
    if (!fresh(it->second)) it->second = {ctx, Clock::now(), it->second.lru};
    touch(it->second);
    return it->second.ctx;
  }
  im.lru.push_front(h.name);
  im.cache.emplace(h.name, Impl::Entry{ctx, Clock::now(), im.lru.begin()});
  while (im.cache.size() > kMaxCachedHosts) {
    im.cache.erase(im.lru.back());
    im.lru.pop_back();
  }
  return ctx;
}

size_t SandboxCa::cached_hosts() const {
  std::lock_guard lock(impl_->mu);
  return impl_->cache.size();
}

std::string SandboxCa::write_trust_bundle(const std::string& dir, const std::string& system_bundle) const {
  std::string content;
  if (!system_bundle.empty()) {
    std::ifstream in(system_bundle, std::ios::binary);
    if (!in) throw Error(Code::kFailedPrecondition, errno_text("read the system CA bundle " + system_bundle, errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    content = ss.str();
    if (!content.empty() && content.back() != '\n') content += '\n';
  }
  // PEM readers skip text outside BEGIN/END lines, so the label is safe for every TLS stack.
  content += "# Bulwark sandbox " + impl_->id + " CA\n" + impl_->pem;

  // Written beside the target and renamed over it, so a reader never sees half a bundle.
  const std::string path = dir + "/ca-bundle.crt";
  TempFile tmp;
  std::string tmpl = dir + "/.ca-bundle.crt.XXXXXX";
  tmp.fd = ::mkstemp(tmpl.data());
  if (tmp.fd < 0) throw Error(Code::kInternal, errno_text("create a temp file in " + dir, errno));
  tmp.path = tmpl;
  // mkstemp makes it 0600; the agent runs as another user and must be able to read it.
  if (::fchmod(tmp.fd, 0644) != 0) throw Error(Code::kInternal, errno_text("chmod " + tmp.path, errno));
  for (size_t done = 0; done < content.size();) {
    ssize_t n = ::write(tmp.fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(Code::kInternal, errno_text("write " + tmp.path, errno));
    done += static_cast<size_t>(n);
  }
  int fd = tmp.fd;
  tmp.fd = -1;
  if (::close(fd) != 0) throw Error(Code::kInternal, errno_text("close " + tmp.path, errno));
  if (::rename(tmp.path.c_str(), path.c_str()) != 0)
    throw Error(Code::kInternal, errno_text("rename " + tmp.path + " to " + path, errno));
  tmp.path.clear();
  return path;
}

std::shared_ptr<SSL_CTX> SandboxCa::client_ctx(const std::string& extra_ca_file) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) fail("create a TLS client context");
  check(SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION), "require TLS 1.2");
  check(SSL_CTX_set_default_verify_paths(ctx.get()), "load the system CA roots");
  if (!extra_ca_file.empty() && SSL_CTX_load_verify_locations(ctx.get(), extra_ca_file.c_str(), nullptr) != 1)
    fail("load the operator CA file " + extra_ca_file, Code::kInvalidArgument);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  // The proxy relays HTTP/1.1 upstream too: never let a server pick h2. (Returns 0 on success.)
  static constexpr unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  if (SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof kAlpn) != 0) fail("set ALPN http/1.1");
  return to_shared(std::move(ctx));
}

void prepare_client_ssl(SSL* ssl, const std::string& host) {
  ERR_clear_error();
  Host h = normalize_host(host);
  if (h.ip) {
    check(X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), h.name.c_str()), "set the IP to verify");
    return;
  }
  check(SSL_set_tlsext_host_name(ssl, h.name.c_str()), "set SNI");
  check(SSL_set1_host(ssl, h.name.c_str()), "set the host name to verify");
  // "*.example.com" yes, "f*.example.com" no.
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
}

std::string find_system_bundle() {
  for (const char* p : {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"})
    if (::access(p, R_OK) == 0) return p;
  return {};
}

std::vector<std::pair<std::string, std::string>> trust_env(const std::string& bundle_path) {
  std::vector<std::pair<std::string, std::string>> env;
  // NODE_EXTRA_CA_CERTS adds to Node's built-in roots; the full bundle there is harmless.
  for (const char* k :
       {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO"}) {
    env.emplace_back(k, bundle_path);
  }
  return env;
}

}  // namespace bulwark::proxy
