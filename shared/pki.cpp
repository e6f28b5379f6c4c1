#include "shared/pki.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>

#include "shared/error.h"
#include "shared/host_name.h"
#include "shared/openssl_ptr.h"
#include "shared/process.h"
#include "shared/util.h"

namespace bulwark::pki {
namespace {

using namespace ossl;

constexpr long kDay = 24 * 3600;
constexpr long kBackdate = 3600;  // tolerate clocks of other hosts somewhat behind ours

[[noreturn]] void fail(const std::string& what) { throw Error(Code::kInternal, what + ": " + ossl_errors()); }

void check(long rc, const std::string& what) {
  if (rc != 1) fail(what);
}

std::string regen_hint(const std::string& crt, const std::string& key) {
  return "delete " + crt + " and " + key + " and start again to have them regenerated";
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// A host name or IP literal as a certificate holds it.
using Name = HostName;

Name parse_name(const std::string& raw) {
  auto h = parse_host_name(raw);
  if (!h)
    throw Error(Code::kInvalidArgument, "'" + raw + "' is not a DNS name or IP address: give a host name or an IP",
                "tls_san");
  return *h;
}

void check_identity(const std::string& id) {
  bool ok = !id.empty() && id.size() <= 64;
  for (char c : id) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_');
  if (!ok)
    throw Error(Code::kInvalidArgument,
                "client identity '" + id + "' must be 1-64 characters of a-z, 0-9, '-' and '_'", "identity");
}

// ---- files ----

X509Ptr read_cert(const std::string& path) {
  ERR_clear_error();
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio)
    throw Error(Code::kInvalidArgument, errno_text("open certificate " + path, errno) + ": check the path");
  X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!x)
    throw Error(Code::kInvalidArgument, path + " holds no PEM certificate (" + ossl_errors() + "): point at a .crt file");
  return x;
}

PkeyPtr read_key(const std::string& path) {
  ERR_clear_error();
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) throw Error(Code::kInvalidArgument, errno_text("open private key " + path, errno) + ": check the path");
  PkeyPtr k(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!k)
    throw Error(Code::kInvalidArgument,
                path + " holds no unencrypted PEM private key (" + ossl_errors() + "): point at a .key file");
  return k;
}

std::string to_pem(X509* x) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) fail("allocate a memory BIO");
  check(PEM_write_bio_X509(bio.get(), x), "encode a certificate as PEM");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string to_pem(EVP_PKEY* k) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) fail("allocate a memory BIO");
  check(PEM_write_bio_PrivateKey(bio.get(), k, nullptr, nullptr, 0, nullptr, nullptr), "encode a key as PEM");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// Written to a temp file beside the target with the final mode, then linked into place, so a
// reader never sees half a file and an existing file is never replaced (link fails with EEXIST).
void write_new_file(const std::string& path, const std::string& content, mode_t mode) {
  std::string tmpl = path + ".tmp.XXXXXX";
  Fd fd(::mkstemp(tmpl.data()));
  if (!fd) throw Error(Code::kInternal, errno_text("create a temp file for " + path, errno));
  struct Unlink {
    std::string p;
    ~Unlink() { ::unlink(p.c_str()); }
  } cleanup{tmpl};
  if (::fchmod(fd.get(), mode) != 0) throw Error(Code::kInternal, errno_text("chmod " + tmpl, errno));
  for (size_t done = 0; done < content.size();) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(Code::kInternal, errno_text("write " + tmpl, errno));
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) throw Error(Code::kInternal, errno_text("fsync " + tmpl, errno));
  if (::link(tmpl.c_str(), path.c_str()) != 0) throw Error(Code::kInternal, errno_text("link " + path, errno));
}

// ---- certificates ----


void add_ext(X509* subject, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, subject, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext) fail(std::string("build the ") + OBJ_nid2sn(nid) + " extension '" + value + "'");
  if (!X509_add_ext(subject, ext.get(), -1)) fail(std::string("add the ") + OBJ_nid2sn(nid) + " extension");
}

void set_subject(X509* x, const std::string& cn) {
  X509_NAME* name = X509_get_subject_name(x);
  check(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("Bulwark"), -1,
                                   -1, 0),
        "set a certificate organization");
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.data()),
                                   static_cast<int>(cn.size()), -1, 0),
        "set a certificate common name");
}

// A fresh certificate for `key`: v3, random serial, valid from an hour ago for `days`.
X509Ptr new_cert(EVP_PKEY* key, const std::string& cn, int days) {
  X509Ptr cert(X509_new());
  if (!cert) fail("allocate a certificate");
  X509* x = cert.get();
  check(X509_set_version(x, X509_VERSION_3), "set a certificate version");
  set_random_serial(x);
  time_t now = ::time(nullptr);
  if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, -kBackdate, &now) ||
      !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, &now))
    fail("set a certificate's validity");
  set_subject(x, cn);
  check(X509_set_pubkey(x, key), "set a certificate public key");
  return cert;
}

struct Ca {
  X509Ptr cert;
  PkeyPtr key;  // null until a certificate has to be issued
  std::string cert_path, key_path;
};

void make_ca(const Paths& p, const Options& o, Ca& ca, std::vector<std::string>& created) {
  PkeyPtr key = new_p256_key();
  X509Ptr cert = new_cert(key.get(), "Bulwark CA", o.ca_days);
  X509* x = cert.get();
  check(X509_set_issuer_name(x, X509_get_subject_name(x)), "set the CA issuer");
  add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(x, x, NID_subject_key_identifier, "hash");
  if (X509_sign(x, key.get(), EVP_sha256()) <= 0) fail("self-sign the CA");
  // The key first: a ca.crt without its key would make every later start fail.
  write_new_file(p.ca_key, to_pem(key.get()), 0600);
  created.push_back(p.ca_key);
  write_new_file(p.ca_cert, to_pem(x), 0644);
  created.push_back(p.ca_cert);
  ca.cert = std::move(cert);
  ca.key = std::move(key);
}

enum class Kind { kServer, kNatsServer, kClient };

void issue(Ca& ca, const std::string& crt, const std::string& key_path, Kind kind, const std::string& cn,
           const std::vector<Name>& names, int days, std::vector<std::string>& created) {
  if (!ca.key) {
    if (!exists(ca.key_path))
      throw Error(Code::kFailedPrecondition,
                  "cannot create " + crt + ": the CA key " + ca.key_path +
                      " is missing; put it back, or delete the whole PKI directory to start a new CA "
                      "(every client then needs the new ca.crt)");
    ca.key = read_key(ca.key_path);
    if (X509_check_private_key(ca.cert.get(), ca.key.get()) != 1) {
      ERR_clear_error();
      throw Error(Code::kFailedPrecondition,
                  ca.key_path + " does not match the CA certificate beside it: delete the whole PKI directory to "
                                "start a new CA");
    }
  }
  PkeyPtr key = new_p256_key();
  X509Ptr cert = new_cert(key.get(), cn, days);
  X509* x = cert.get();
  X509* issuer = ca.cert.get();
  check(X509_set_issuer_name(x, X509_get_subject_name(issuer)), "set a certificate issuer");
  // A leaf must not outlive its CA: verifiers would reject it in that last stretch anyway.
  if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(issuer)) > 0)
    check(X509_set1_notAfter(x, X509_get0_notAfter(issuer)), "cap a certificate's validity");
  add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
  add_ext(x, issuer, NID_key_usage, "critical,digitalSignature");
  // nats-server presents its certificate on cluster routes too, where it acts as a client.
  add_ext(x, issuer, NID_ext_key_usage,
          kind == Kind::kClient ? "clientAuth" : kind == Kind::kServer ? "serverAuth" : "serverAuth,clientAuth");
  add_ext(x, issuer, NID_subject_key_identifier, "hash");
  add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
  if (!names.empty()) {
    std::string san;
    for (const auto& n : names) san += (san.empty() ? "" : ",") + std::string(n.ip ? "IP:" : "DNS:") + n.text;
    add_ext(x, issuer, NID_subject_alt_name, san);
  }
  if (X509_sign(x, ca.key.get(), EVP_sha256()) <= 0) fail("sign " + crt);
  write_new_file(key_path, to_pem(key.get()), 0600);
  created.push_back(key_path);
  write_new_file(crt, to_pem(x), 0644);
  created.push_back(crt);
}

void check_key_mode(const std::string& key) {
  struct stat st {};
  if (::stat(key.c_str(), &st) != 0) throw Error(Code::kInternal, errno_text("stat " + key, errno));
  if (st.st_mode & 077)
    throw Error(Code::kFailedPrecondition,
                "private key " + key + " is readable by other users: run chmod 600 " + key + " (or delete it to "
                                                                                            "have it regenerated)");
}

void check_not_expired(X509* x, const std::string& path, const std::string& what_to_do) {
  if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
    throw Error(Code::kFailedPrecondition, path + " has expired: " + what_to_do);
}

// Checks an existing leaf: key matches, signed by the CA, valid now for its purpose, carries
// every required name.
void validate_leaf(const Ca& ca, const std::string& crt, const std::string& key, Kind kind,
                   const std::vector<Name>& required) {
  const std::string hint = regen_hint(crt, key);
  X509Ptr x = read_cert(crt);
  PkeyPtr k = read_key(key);
  check_key_mode(key);
  check_not_expired(x.get(), crt, hint);
  if (X509_check_private_key(x.get(), k.get()) != 1) {
    ERR_clear_error();
    throw Error(Code::kFailedPrecondition, key + " does not match " + crt + ": " + hint);
  }
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !ctx) fail("allocate a certificate store");
  check(X509_STORE_add_cert(store.get(), ca.cert.get()), "add the CA to a store");
  check(X509_STORE_CTX_init(ctx.get(), store.get(), x.get(), nullptr), "start verifying " + crt);
  check(X509_STORE_CTX_set_purpose(ctx.get(), kind == Kind::kClient ? X509_PURPOSE_SSL_CLIENT : X509_PURPOSE_SSL_SERVER),
        "set a verification purpose");
  if (X509_verify_cert(ctx.get()) != 1) {
    ERR_clear_error();
    throw Error(Code::kFailedPrecondition,
                crt + " does not verify against " + ca.cert_path + " (" +
                    X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())) + "): " + hint);
  }
  for (const auto& n : required) {
    int rc = n.ip ? X509_check_ip_asc(x.get(), n.text.c_str(), 0)
                  : X509_check_host(x.get(), n.text.c_str(), n.text.size(), X509_CHECK_FLAG_NO_WILDCARDS, nullptr);
    if (rc != 1)
      throw Error(Code::kFailedPrecondition, crt + " does not cover " + n.text + ": " + hint + " with that name");
  }
}

// The server names: always localhost and the loopback addresses, the extra ones, and the host
// name when it is a valid DNS name (added at creation, not required later: a container's host
// name changes on every start).
std::vector<Name> required_names(const Options& o) {
  std::vector<Name> out = {{"localhost", false}, {"127.0.0.1", true}, {"::1", true}};
  for (const auto& raw : o.extra_names) {
    Name n = parse_name(raw);
    bool dup = false;
    for (const auto& e : out) dup = dup || e.text == n.text;
    if (!dup) out.push_back(n);
  }
  return out;
}

void ensure_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(Code::kInternal, "create the PKI directory " + dir + ": " + ec.message(), "tls_dir");
  if (::chmod(dir.c_str(), 0700) != 0) throw Error(Code::kInternal, errno_text("chmod 700 " + dir, errno), "tls_dir");
}

}  // namespace

std::string Paths::client_cert(const std::string& identity) const { return dir + "/client-" + identity + ".crt"; }
std::string Paths::client_key(const std::string& identity) const { return dir + "/client-" + identity + ".key"; }

Paths paths(const std::string& dir) {
  Paths p;
  p.dir = dir;
  p.ca_cert = dir + "/ca.crt";
  p.ca_key = dir + "/ca.key";
  p.gateway_cert = dir + "/gateway-server.crt";
  p.gateway_key = dir + "/gateway-server.key";
  p.nats_cert = dir + "/nats-server.crt";
  p.nats_key = dir + "/nats-server.key";
  return p;
}

Result ensure_pki(const std::string& dir, const Options& o) {
  if (dir.empty()) throw Error(Code::kInvalidArgument, "the PKI directory is empty: give --tls-dir DIR", "tls_dir");
  if (o.ca_days < 1 || o.leaf_days < 1)
    throw Error(Code::kInvalidArgument, "certificate lifetimes must be at least one day", "days");
  for (const auto& id : o.client_identities) check_identity(id);
  const std::vector<Name> names = required_names(o);
  std::vector<Name> create_names = names;
  std::string host = hostname();
  try {
    Name h = parse_name(host);
    bool dup = false;
    for (const auto& e : create_names) dup = dup || e.text == h.text;
    if (!dup) create_names.push_back(h);
  } catch (const Error&) {
    // A host name that is no DNS name cannot be in a certificate; localhost still is.
  }

  ensure_dir(dir);
  Result r;
  r.paths = paths(dir);
  const Paths& p = r.paths;

  // Two processes starting together (gateway, nats bootstrap) must not both create a CA.
  const std::string lock_path = dir + "/.lock";
  Fd lock(::open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600));
  if (!lock) throw Error(Code::kInternal, errno_text("open " + lock_path, errno), "tls_dir");
  while (::flock(lock.get(), LOCK_EX) != 0) {
    if (errno != EINTR) throw Error(Code::kInternal, errno_text("flock " + lock_path, errno), "tls_dir");
  }
  ERR_clear_error();

  Ca ca;
  ca.cert_path = p.ca_cert;
  ca.key_path = p.ca_key;
  if (exists(p.ca_cert)) {
    ca.cert = read_cert(p.ca_cert);
    check_not_expired(ca.cert.get(), p.ca_cert,
                      "delete the whole directory " + dir + " and start again to create a new CA (every client then "
                                                            "needs the new ca.crt)");
    if (X509_check_ca(ca.cert.get()) == 0)
      throw Error(Code::kFailedPrecondition,
                  p.ca_cert + " is not a CA certificate: delete the whole directory " + dir + " and start again");
    if (exists(p.ca_key)) check_key_mode(p.ca_key);
  } else {
    // A leaf without its CA can never be verified again: refuse rather than orphan it.
    for (const auto& f : {p.ca_key, p.gateway_cert, p.nats_cert}) {
      if (exists(f))
        throw Error(Code::kFailedPrecondition, p.ca_cert + " is missing but " + f + " exists: restore ca.crt, or "
                                                   "delete the whole directory " + dir + " to start a new PKI");
    }
    make_ca(p, o, ca, r.created);
  }

  struct Leaf {
    std::string crt, key;
    Kind kind;
    std::string cn;
  };
  std::vector<Leaf> leaves = {{p.gateway_cert, p.gateway_key, Kind::kServer, "bulwark-gateway"},
                              {p.nats_cert, p.nats_key, Kind::kNatsServer, "bulwark-nats"}};
  for (const auto& id : o.client_identities) leaves.push_back({p.client_cert(id), p.client_key(id), Kind::kClient, id});
  for (const auto& l : leaves) {
    bool has_crt = exists(l.crt), has_key = exists(l.key);
    bool server = l.kind != Kind::kClient;
    if (has_crt && has_key) {
      validate_leaf(ca, l.crt, l.key, l.kind, server ? names : std::vector<Name>{});
    } else if (has_crt || has_key) {
      const std::string& there = has_crt ? l.crt : l.key;
      throw Error(Code::kFailedPrecondition,
                  there + " exists without " + (has_crt ? l.key : l.crt) + ": delete " + there +
                      " and start again to have the pair regenerated");
    } else {
      issue(ca, l.crt, l.key, l.kind, l.cn, server ? create_names : std::vector<Name>{}, o.leaf_days, r.created);
    }
  }

  r.ca_fingerprint = cert_fingerprint(p.ca_cert);
  return r;
}

std::string cert_fingerprint(const std::string& pem_file) {
  X509Ptr x = read_cert(pem_file);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  check(X509_digest(x.get(), EVP_sha256(), md, &len), "digest " + pem_file);
  std::string out;
  char hex[4];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(hex, sizeof hex, i ? ":%02X" : "%02X", md[i]);
    out += hex;
  }
  return out;
}

void check_cert_and_key(const std::string& cert_file, const std::string& key_file, const std::string& cert_field,
                        const std::string& key_field) {
  X509Ptr x;
  PkeyPtr k;
  try {
    if (!cert_file.empty()) x = read_cert(cert_file);
  } catch (const Error& e) {
    throw Error(Code::kInvalidArgument, e.what(), cert_field);
  }
  try {
    if (!key_file.empty()) k = read_key(key_file);
  } catch (const Error& e) {
    throw Error(Code::kInvalidArgument, e.what(), key_field);
  }
  if (x && X509_cmp_current_time(X509_get0_notAfter(x.get())) <= 0)
    throw Error(Code::kInvalidArgument, cert_file + " has expired: get a new certificate", cert_field);
  if (x && k && X509_check_private_key(x.get(), k.get()) != 1) {
    ERR_clear_error();
    throw Error(Code::kInvalidArgument, key_file + " is not the key of " + cert_file + ": give the matching pair",
                key_field);
  }
}

void check_ca_file(const std::string& ca_file, const std::string& field) {
  try {
    read_cert(ca_file);
  } catch (const Error& e) {
    throw Error(Code::kInvalidArgument, e.what(), field);
  }
}

ossl::PkeyPtr new_p256_key() {
  ossl::PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) fail("generate an EC P-256 key");
  return key;
}

void set_random_serial(X509* x) {
  unsigned char bytes[16];
  check(RAND_bytes(bytes, sizeof bytes), "draw a certificate serial");
  bytes[0] &= 0x7f;  // keeps the DER INTEGER positive in 16 bytes
  ossl::BnPtr bn(BN_bin2bn(bytes, sizeof bytes, nullptr));
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x))) fail("set a certificate serial");
}

}  // namespace bulwark::pki
