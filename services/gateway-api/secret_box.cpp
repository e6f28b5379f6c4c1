#include "services/gateway-api/secret_box.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <optional>

#include "shared/error.h"

namespace bulwark::gateway {

namespace {
constexpr size_t kNonce = 12;
constexpr size_t kTag = 16;
constexpr const char* kPrefix = "v1:";
constexpr size_t kIdLen = 8;

struct CtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxDeleter>;

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
unsigned char* bytes(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

std::string to_hex(const unsigned char* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += kHex[p[i] >> 4];
    out += kHex[p[i] & 15];
  }
  return out;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string key_id(const SecretBox::Key& k) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(k.data(), k.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw Error(Code::kInternal, "OpenSSL EVP_Digest(sha256) failed");
  return to_hex(md, len).substr(0, kIdLen);
}

std::string base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(bytes(out), bytes(in), static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// Strict: only the alphabet, length a multiple of 4, padding at the end. nullopt when malformed.
std::optional<std::string> unbase64(std::string_view in) {
  if (in.empty() || in.size() % 4 != 0) return std::nullopt;
  size_t pad = 0;
  while (pad < 2 && in[in.size() - 1 - pad] == '=') ++pad;
  for (size_t i = 0; i < in.size() - pad; ++i) {
    char c = in[i];
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/')) return std::nullopt;
  }
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(bytes(out), bytes(in), static_cast<int>(in.size()));
  if (n < 0) return std::nullopt;
  out.resize(static_cast<size_t>(n) - pad);  // EVP_DecodeBlock counts the padding as zero bytes
  return out;
}

void random_bytes(unsigned char* p, size_t n) {
  if (RAND_bytes(p, static_cast<int>(n)) != 1) throw Error(Code::kInternal, "OpenSSL RAND_bytes failed");
}

[[noreturn]] void fail_file(const std::string& path, const std::string& why) {
  throw Error(Code::kFailedPrecondition, "provider key file " + path + ": " + why);
}

// The first run: one fresh key, written where nobody else can read it. O_EXCL so an existing file
// (or one another process is creating) is never overwritten.
std::optional<SecretBox::Key> create_ring(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return std::nullopt;
    fail_file(path, errno_text("cannot create it: open", errno) + " (set --provider-key-file to a writable place)");
  }
  SecretBox::Key k{};
  random_bytes(k.data(), k.size());
  std::string text = to_hex(k.data(), k.size()) + "\n";
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());  // a half-written ring would fail every later start
    fail_file(path, errno_text("cannot write it", err));
  }
  spdlog::info("created provider key file {} (key {}): back it up; without it stored credentials cannot be read", path,
               key_id(k));
  return k;
}

std::vector<SecretBox::Key> read_ring(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_file(path, errno_text("cannot read it: open", errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail_file(path, "not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    // Writable by others is as bad as readable: whoever can put a key first reads every new secret.
    fail_file(path, std::string("is accessible by group or others (mode ") + mode + "); run `chmod 600 " + path +
                        "` and start again");
  }
  std::string text;
  char buf[4096];
  ssize_t n = 0;
  while ((n = ::read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) text.append(buf, static_cast<size_t>(n));
  int err = errno;
  ::close(fd);
  if (n < 0) fail_file(path, errno_text("cannot read it", err));

  std::vector<SecretBox::Key> keys;
  size_t line_no = 0, start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    SecretBox::Key k{};
    bool ok = line.size() == 2 * k.size();
    for (size_t i = 0; ok && i < k.size(); ++i) {
      int hi = hex_digit(line[2 * i]), lo = hex_digit(line[2 * i + 1]);
      ok = hi >= 0 && lo >= 0;
      k[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
    // Never quote the line: it is (nearly) a key.
    if (!ok)
      fail_file(path, "line " + std::to_string(line_no) +
                          " is not a key: each line must be 64 hex digits (make one with `openssl rand -hex 32`)");
    keys.push_back(k);
  }
  if (keys.empty()) fail_file(path, "holds no key (one line of 64 hex digits; make one with `openssl rand -hex 32`)");
  return keys;
}
}  // namespace

SecretBox SecretBox::load(const std::string& path) {
  if (auto k = create_ring(path)) return SecretBox({*k}, path);
  return SecretBox(read_ring(path), path);
}

SecretBox::SecretBox(std::vector<Key> keys, std::string path) : keys_(std::move(keys)), path_(std::move(path)) {
  if (keys_.empty()) throw Error(Code::kInternal, "SecretBox needs at least one key");
  for (const auto& k : keys_) ids_.push_back(key_id(k));
}

std::string SecretBox::seal(std::string_view plain, std::string_view aad) const {
  std::string buf(kNonce + plain.size() + kTag, '\0');
  unsigned char* nonce = bytes(buf);
  unsigned char* out = nonce + kNonce;
  random_bytes(nonce, kNonce);  // 96-bit random nonces: safe for far more seals than a gateway makes
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0, fin = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, keys_.front().data(), nonce) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, bytes(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out, &len, bytes(plain), static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out + len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag, out + plain.size()) != 1)
    throw Error(Code::kInternal, "OpenSSL AES-256-GCM encryption failed");
  return kPrefix + ids_.front() + ":" + base64(buf);
}

std::string SecretBox::key_id_of(std::string_view sealed) {
  std::string_view p(kPrefix);
  if (sealed.size() < p.size() + kIdLen + 1 || sealed.substr(0, p.size()) != p || sealed[p.size() + kIdLen] != ':')
    return "";
  return std::string(sealed.substr(p.size(), kIdLen));
}

std::string SecretBox::open(std::string_view sealed, std::string_view aad) const {
  std::string id = key_id_of(sealed);
  if (id.empty()) throw Error(Code::kInternal, "a sealed credential is not in the v1 form (corrupt database?)");
  size_t k = 0;
  while (k < ids_.size() && ids_[k] != id) ++k;
  if (k == ids_.size())
    throw Error(Code::kInternal, "credentials sealed with key " + id + ", which is not in the provider key file " + path_ +
                                     ": put that key back in the file (any line) and restart the gateway");
  auto raw = unbase64(sealed.substr(std::string_view(kPrefix).size() + kIdLen + 1));
  if (!raw || raw->size() < kNonce + kTag) throw Error(Code::kInternal, "a sealed credential is malformed (corrupt database?)");
  const size_t n = raw->size() - kNonce - kTag;
  unsigned char* nonce = bytes(*raw);
  std::string plain(n, '\0');
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0, fin = 0;
  bool ok = ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, keys_[k].data(), nonce) == 1 &&
            EVP_DecryptUpdate(ctx.get(), nullptr, &len, bytes(aad), static_cast<int>(aad.size())) == 1 &&
            EVP_DecryptUpdate(ctx.get(), bytes(plain), &len, nonce + kNonce, static_cast<int>(n)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag, nonce + kNonce + n) == 1 &&
            EVP_DecryptFinal_ex(ctx.get(), bytes(plain) + len, &fin) == 1;
  if (!ok)
    throw Error(Code::kInternal, "a sealed credential does not authenticate with key " + id +
                                     " (altered, or copied from another provider)");
  return plain;
}

std::string default_key_file(const std::string& db_path) {
  auto slash = db_path.rfind('/');
  if (slash == std::string::npos) return "provider.key";
  return db_path.substr(0, slash + 1) + "provider.key";
}

}  // namespace bulwark::gateway
