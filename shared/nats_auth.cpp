#include "shared/nats_auth.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "shared/error.h"
#include "shared/process.h"

namespace bulwark::nats_auth {
namespace {

constexpr char kBase32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
constexpr char kBase64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// nkeys prefix bytes: the first base32 character of an encoded key names its type.
constexpr uint8_t kPrefixSeed = 18 << 3;  // 'S'
uint8_t prefix_of(KeyType t) {
  switch (t) {
    case KeyType::kOperator: return 14 << 3;  // 'O'
    case KeyType::kAccount: return 0;         // 'A'
    case KeyType::kUser: return 20 << 3;      // 'U'
    case KeyType::kServer: return 13 << 3;    // 'N'
  }
  return 0;
}
std::optional<KeyType> type_of(uint8_t prefix) {
  for (KeyType t : {KeyType::kOperator, KeyType::kAccount, KeyType::kUser, KeyType::kServer})
    if (prefix_of(t) == prefix) return t;
  return std::nullopt;
}

Error bad(const std::string& what) { return Error(Code::kInvalidArgument, what, "nkey"); }

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};

std::unique_ptr<EVP_PKEY, PkeyFree> private_key(const std::string& seed) {
  std::unique_ptr<EVP_PKEY, PkeyFree> k(EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(seed.data()), seed.size()));
  if (!k) throw Error(Code::kInternal, "OpenSSL cannot load an Ed25519 key (is OpenSSL 1.1.1+ installed?)");
  return k;
}

// base32(prefix bytes + key + crc16 little-endian)
std::string encode(std::string prefix, const std::string& raw) {
  std::string b = std::move(prefix) + raw;
  uint16_t crc = crc16_xmodem(b);
  b.push_back(static_cast<char>(crc & 0xff));
  b.push_back(static_cast<char>(crc >> 8));
  return base32_encode(b);
}
// The bytes before the checksum, after checking it.
std::string decode_checked(std::string_view text) {
  std::string b = base32_decode(text);
  if (b.size() < 3) throw bad("nkey too short");
  uint16_t want = static_cast<uint8_t>(b[b.size() - 2]) | static_cast<uint16_t>(static_cast<uint8_t>(b.back()) << 8);
  b.resize(b.size() - 2);
  if (crc16_xmodem(b) != want) throw bad("nkey checksum mismatch: the key was mistyped or cut short");
  return b;
}

std::string sha512_256(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!EVP_Digest(data.data(), data.size(), md, &n, EVP_sha512_256(), nullptr))
    throw Error(Code::kInternal, "OpenSSL SHA-512/256 failed");
  return std::string(reinterpret_cast<char*>(md), n);
}

nlohmann::json subject_list(const std::vector<std::string>& allow, const std::vector<std::string>& deny) {
  nlohmann::json j = nlohmann::json::object();
  if (!allow.empty()) j["allow"] = allow;
  if (!deny.empty()) j["deny"] = deny;
  return j;
}

// Signs claims as issuer; jti is the hash of the claims without it, as nats.jwt v2 does.
std::string encode_jwt(const KeyPair& issuer, nlohmann::json claims) {
  claims["iss"] = issuer.public_key();
  claims.erase("jti");
  claims["jti"] = base32_encode(sha512_256(claims.dump()));
  const std::string head = base64url_encode(R"({"typ":"JWT","alg":"ed25519-nkey"})");
  const std::string body = head + "." + base64url_encode(claims.dump());
  return body + "." + base64url_encode(issuer.sign(body));
}

// Unpadded encoding in an alphabet of 2^width characters (base32: 5, base64url: 6), most
// significant bits first; the last character carries the leftover bits, zero-filled.
std::string encode_bits(std::string_view bytes, const char* alphabet, int width) {
  const uint32_t mask = (1u << width) - 1;
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    buf = (buf << 8) | c;
    bits += 8;
    while (bits >= width) {
      out += alphabet[(buf >> (bits - width)) & mask];
      bits -= width;
    }
  }
  if (bits > 0) out += alphabet[(buf << (width - bits)) & mask];
  return out;
}

}  // namespace

std::string base32_encode(std::string_view bytes) { return encode_bits(bytes, kBase32, 5); }

std::string base32_decode(std::string_view text) {
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (char c : text) {
    const char* p = c ? std::char_traits<char>::find(kBase32, 32, c) : nullptr;
    if (!p) throw bad(std::string("not base32: character '") + c + "'");
    buf = (buf << 5) | static_cast<uint32_t>(p - kBase32);
    bits += 5;
    if (bits >= 8) {
      out += static_cast<char>((buf >> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return out;
}

std::string base64url_encode(std::string_view bytes) { return encode_bits(bytes, kBase64Url, 6); }

std::string base64url_decode(std::string_view text) {
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    const char* p = c ? std::char_traits<char>::find(kBase64Url, 64, c) : nullptr;
    if (!p) throw Error(Code::kInvalidArgument, std::string("not base64url: character '") + c + "'", "jwt");
    buf = (buf << 6) | static_cast<uint32_t>(p - kBase64Url);
    bits += 6;
    if (bits >= 8) {
      out += static_cast<char>((buf >> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return out;
}

uint16_t crc16_xmodem(std::string_view bytes) {
  uint16_t crc = 0;
  for (unsigned char c : bytes) {
    crc ^= static_cast<uint16_t>(c << 8);
    for (int i = 0; i < 8; ++i) crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : static_cast<uint16_t>(crc << 1);
  }
  return crc;
}

KeyPair KeyPair::create(KeyType type) {
  std::string seed(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(seed.data()), 32) != 1)
    throw Error(Code::kInternal, "OpenSSL has no random bytes for a new nkey");
  std::string pub(32, '\0');
  size_t n = pub.size();
  if (!EVP_PKEY_get_raw_public_key(private_key(seed).get(), reinterpret_cast<unsigned char*>(pub.data()), &n))
    throw Error(Code::kInternal, "OpenSSL cannot derive an Ed25519 public key");
  return KeyPair(type, std::move(seed), std::move(pub));
}

KeyPair KeyPair::from_seed(std::string_view encoded_seed) {
  std::string b = decode_checked(encoded_seed);
  if (b.size() != 34) throw bad("an nkey seed has 58 characters");
  uint8_t b1 = static_cast<uint8_t>(b[0]), b2 = static_cast<uint8_t>(b[1]);
  if ((b1 & 0xf8) != kPrefixSeed) throw bad("not an nkey seed (it must start with 'S')");
  auto type = type_of(static_cast<uint8_t>(((b1 & 7) << 5) | ((b2 & 0xf8) >> 3)));
  if (!type) throw bad("nkey seed of an unknown key type");
  std::string seed = b.substr(2);
  std::string pub(32, '\0');
  size_t n = pub.size();
  if (!EVP_PKEY_get_raw_public_key(private_key(seed).get(), reinterpret_cast<unsigned char*>(pub.data()), &n))
    throw Error(Code::kInternal, "OpenSSL cannot derive an Ed25519 public key");
  return KeyPair(*type, std::move(seed), std::move(pub));
}

std::string KeyPair::public_key() const { return encode(std::string(1, static_cast<char>(prefix_of(type_))), pub_); }

std::string KeyPair::encoded_seed() const {
  uint8_t p = prefix_of(type_);
  std::string prefix = {static_cast<char>(kPrefixSeed | (p >> 5)), static_cast<char>((p & 31) << 3)};
  return encode(prefix, seed_);
}

std::string KeyPair::sign(std::string_view data) const {
  auto key = private_key(seed_);
  std::unique_ptr<EVP_MD_CTX, PkeyFree> ctx(EVP_MD_CTX_new());
  std::string sig(64, '\0');
  size_t n = sig.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &n,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1)
    throw Error(Code::kInternal, "OpenSSL Ed25519 signing failed");
  return sig;
}

std::string decode_public_key(std::string_view encoded, std::optional<KeyType> expected) {
  std::string b = decode_checked(encoded);
  if (b.size() != 33) throw bad("a public nkey has 56 characters");
  auto type = type_of(static_cast<uint8_t>(b[0]));
  if (!type) throw bad("not a public nkey (unknown prefix '" + std::string(1, encoded[0]) + "')");
  if (expected && *type != *expected) throw bad("public nkey of the wrong type: " + std::string(encoded.substr(0, 1)));
  return b.substr(1);
}

bool verify(std::string_view encoded_public_key, std::string_view data, std::string_view signature) {
  std::string raw = decode_public_key(encoded_public_key);
  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw.data()), raw.size()));
  std::unique_ptr<EVP_MD_CTX, PkeyFree> ctx(EVP_MD_CTX_new());
  if (!key || !ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
}

std::string operator_jwt(const KeyPair& op, const std::string& name, const std::string& system_account, int64_t iat) {
  if (op.type() != KeyType::kOperator) throw bad("an operator JWT is signed by an operator key");
  decode_public_key(system_account, KeyType::kAccount);
  nlohmann::json c = {{"iat", iat}, {"name", name}, {"sub", op.public_key()},
                      {"nats", {{"type", "operator"}, {"version", 2}, {"system_account", system_account}}}};
  return encode_jwt(op, std::move(c));
}

std::string account_jwt(const KeyPair& op, const std::string& account_public_key, const std::string& name,
                        bool jetstream, int64_t iat) {
  if (op.type() != KeyType::kOperator) throw bad("an account JWT is signed by an operator key");
  decode_public_key(account_public_key, KeyType::kAccount);
  nlohmann::json limits = {{"subs", -1}, {"data", -1}, {"payload", -1}, {"imports", -1},
                           {"exports", -1}, {"wildcards", true}, {"conn", -1}, {"leaf", -1}};
  // JetStream is on for an account only when its storage limits are not zero.
  if (jetstream) {
    limits["mem_storage"] = -1;
    limits["disk_storage"] = -1;
    limits["streams"] = -1;
    limits["consumer"] = -1;
  }
  nlohmann::json c = {{"iat", iat}, {"name", name}, {"sub", account_public_key},
                      {"nats", {{"type", "account"}, {"version", 2}, {"limits", limits},
                                {"default_permissions", {{"pub", nlohmann::json::object()}, {"sub", nlohmann::json::object()}}}}}};
  return encode_jwt(op, std::move(c));
}

std::string user_jwt(const KeyPair& account, const std::string& user_public_key, const std::string& name,
                     const Permissions& p, int64_t iat, int64_t exp) {
  if (account.type() != KeyType::kAccount) throw bad("a user JWT is signed by an account key");
  decode_public_key(user_public_key, KeyType::kUser);
  nlohmann::json nats = {{"type", "user"}, {"version", 2}, {"subs", -1}, {"data", -1}, {"payload", -1},
                         {"pub", subject_list(p.pub_allow, p.pub_deny)},
                         {"sub", subject_list(p.sub_allow, p.sub_deny)}};
  // An empty allow list would mean "everything" to nats-server: deny all instead.
  if (p.pub_allow.empty()) nats["pub"]["deny"] = nlohmann::json::array({">"});
  if (p.sub_allow.empty()) nats["sub"]["deny"] = nlohmann::json::array({">"});
  if (p.allow_responses)
    nats["resp"] = {{"max", p.responses_max}, {"ttl", std::chrono::nanoseconds(p.responses_ttl).count()}};
  nlohmann::json c = {{"iat", iat}, {"name", name}, {"sub", user_public_key}, {"nats", nats}};
  if (exp > 0) c["exp"] = exp;
  return encode_jwt(account, std::move(c));
}

nlohmann::json verified_claims(std::string_view jwt) {
  auto d1 = jwt.find('.');
  auto d2 = d1 == std::string_view::npos ? d1 : jwt.find('.', d1 + 1);
  if (d2 == std::string_view::npos) throw Error(Code::kInvalidArgument, "a JWT has three parts separated by '.'", "jwt");
  auto header = nlohmann::json::parse(base64url_decode(jwt.substr(0, d1)), nullptr, false);
  if (!header.is_object() || header.value("alg", "") != "ed25519-nkey")
    throw Error(Code::kInvalidArgument, "JWT header is not {\"alg\":\"ed25519-nkey\"}", "jwt");
  auto claims = nlohmann::json::parse(base64url_decode(jwt.substr(d1 + 1, d2 - d1 - 1)), nullptr, false);
  if (!claims.is_object() || !claims.contains("iss") || !claims["iss"].is_string())
    throw Error(Code::kInvalidArgument, "JWT claims are not an object with an issuer (iss)", "jwt");
  if (!verify(claims["iss"].get<std::string>(), jwt.substr(0, d2), base64url_decode(jwt.substr(d2 + 1))))
    throw Error(Code::kInvalidArgument, "JWT signature does not verify against its issuer", "jwt");
  return claims;
}

std::string creds_file(const std::string& user_jwt, const std::string& user_seed) {
  return "-----BEGIN NATS USER JWT-----\n" + user_jwt +
         "\n------END NATS USER JWT------\n\n"
         "************************* IMPORTANT *************************\n"
         "NKEY Seed printed below can be used to sign and prove identity.\n"
         "NKEYs are sensitive and should be treated as secrets.\n\n"
         "-----BEGIN USER NKEY SEED-----\n" +
         user_seed +
         "\n------END USER NKEY SEED------\n\n"
         "*************************************************************\n";
}

std::string read_text_file(const std::string& path, const std::string& field) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(Code::kInvalidArgument, "cannot read " + path + ": " + std::strerror(errno), field);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

void write_secret_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) throw Error(Code::kUnavailable, "cannot create " + tmp + ": " + std::strerror(errno));
    size_t off = 0;
    while (off < text.size()) {
      ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw Error(Code::kUnavailable, "cannot write " + tmp + ": " + std::strerror(errno));
      off += static_cast<size_t>(n);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    throw Error(Code::kUnavailable, "cannot write " + path + ": " + std::strerror(errno));
}

std::string new_user_creds(const KeyPair& account, const std::string& name, const Permissions& p, int64_t iat,
                           int64_t exp) {
  KeyPair user = KeyPair::create(KeyType::kUser);
  return creds_file(user_jwt(account, user.public_key(), name, p, iat, exp), user.encoded_seed());
}

Creds parse_creds(std::string_view text) {
  // The first non-empty line after each "-----BEGIN ...-----" marker, as libnats reads it.
  auto block = [&](std::string_view marker) -> std::string {
    auto at = text.find(marker);
    if (at == std::string_view::npos) return {};
    auto pos = text.find('\n', at);
    while (pos != std::string_view::npos && pos + 1 < text.size()) {
      auto end = text.find('\n', pos + 1);
      std::string_view line = text.substr(pos + 1, end == std::string_view::npos ? end : end - pos - 1);
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
      if (!line.empty()) return std::string(line);
      pos = end;
    }
    return {};
  };
  Creds c{block("BEGIN NATS USER JWT"), block("BEGIN USER NKEY SEED")};
  if (c.jwt.empty() || c.jwt.starts_with("---"))
    throw Error(Code::kInvalidArgument, "NATS credentials hold no user JWT (expected a .creds file)", "nats-creds");
  if (c.seed.empty() || c.seed.starts_with("---") || !c.seed.starts_with("SU"))
    throw Error(Code::kInvalidArgument, "NATS credentials hold no user nkey seed (SU...)", "nats-creds");
  return c;
}

std::string server_config(const std::string& operator_jwt, const std::string& system_account,
                          const std::map<std::string, std::string>& accounts) {
  std::string s = "operator: " + operator_jwt + "\nsystem_account: " + system_account +
                  "\nresolver: MEMORY\nresolver_preload: {\n";
  for (const auto& [pub, jwt] : accounts) s += "  " + pub + ": " + jwt + "\n";
  return s + "}\n";
}

std::vector<std::string> service_names() {
  return {"gateway-api", "scheduler", "policy-service", "privacy-router",
          "driver-podman", "driver-docker", "driver-kubernetes", "driver-vm"};
}

Permissions service_permissions(const std::string& service) {
  Permissions p;
  // Every service answers its health request and makes requests of its own (replies on _INBOX.).
  // It may ask its own health too: the container health check (bulwark-healthcheck) runs with the
  // service's credentials.
  p.sub_allow = {"bulwark." + service + ".health", "_INBOX.>"};
  p.pub_allow = {"_INBOX.>", "bulwark." + service + ".health"};
  auto pub = [&](std::initializer_list<const char*> s) { p.pub_allow.insert(p.pub_allow.end(), s.begin(), s.end()); };
  auto sub = [&](std::initializer_list<const char*> s) { p.sub_allow.insert(p.sub_allow.end(), s.begin(), s.end()); };
  if (service == "gateway-api") {
    pub({"bulwark.sched.place", "bulwark.driver.*.*", "bulwark.*.health", "bulwark.policy.*", "bulwark.exec.>",
         "bulwark.provider.changed", "bulwark.sandbox.>", "$JS.API.>", "$JS.ACK.BULWARK_SANDBOX.>",
         "$KV.inference_routes.>"});
    sub({"bulwark.driver.heartbeat", "bulwark.provider.resolve", "bulwark.provider.env.*", "_bulwark.deliver.>"});
  } else if (service == "scheduler") {
    pub({"bulwark.driver.*.*", "bulwark.sandbox.*.state", "$JS.API.>"});
    sub({"bulwark.sched.place", "bulwark.driver.heartbeat"});
  } else if (service == "policy-service") {
    pub({"$JS.API.>", "$KV.policies.>", "$KV.policy_versions.>"});
    sub({"bulwark.policy.*", "bulwark.policy.ack.*"});
  } else if (service == "privacy-router") {
    pub({"bulwark.provider.resolve", "bulwark.sandbox.*.logs", "$JS.API.>", "$JS.FC.>"});
    sub({"bulwark.inference.call.*", "bulwark.provider.changed"});
  } else if (service.starts_with("driver-") &&
             (service == "driver-podman" || service == "driver-docker" || service == "driver-kubernetes" ||
              service == "driver-vm")) {
    // A driver's id is chosen at its start, so its requests are allowed by pattern.
    pub({"bulwark.driver.heartbeat", "bulwark.sandbox.*.state", "$JS.API.>"});
    sub({"bulwark.driver.*.*"});
  } else {
    throw Error(Code::kInvalidArgument, "no NATS permissions for service '" + service + "'", "service");
  }
  return p;
}

std::string sandbox_inbox_prefix(const std::string& sandbox_id) { return "_INBOX." + sandbox_id; }

Permissions sandbox_permissions(const std::string& sandbox_id) {
  // The id goes into subject patterns: a '*', '>' or '.' in it would widen them.
  if (sandbox_id.size() != 16 ||
      sandbox_id.find_first_not_of("0123456789abcdef") != std::string::npos)
    throw Error(Code::kInvalidArgument, "a sandbox_id is 16 lowercase hex digits, not '" + sandbox_id + "'", "sandbox_id");
  Permissions p;
  const std::string& id = sandbox_id;
  p.pub_allow = {
      "bulwark.sandbox." + id + ".>",       // state and logs (JetStream publish)
      "bulwark.inference.call." + id,       // inference.local
      "bulwark.provider.env." + id,         // the provider environment, once at launch
      "bulwark.policy.ack." + id,           // which policy version it enforces
      // Its policy: the KV bucket's stream info and an ordered consumer on its own key.
      "$JS.API.INFO",
      "$JS.API.STREAM.NAMES",  // libnats finds the stream of the watched subject by name lookup
      "$JS.API.STREAM.INFO.KV_policies",
      "$JS.API.CONSUMER.CREATE.KV_policies",
      "$JS.API.CONSUMER.CREATE.KV_policies.>",
      "$JS.API.CONSUMER.DELETE.KV_policies.>",
      "$JS.API.CONSUMER.INFO.KV_policies.>",
      "$JS.FC.KV_policies.>",
  };
  p.sub_allow = {"bulwark.exec." + id + ".>", sandbox_inbox_prefix(id) + ".>"};
  // exec answers stream ExecFrames to the gateway's inbox for as long as the command runs.
  p.allow_responses = true;
  p.responses_max = -1;
  p.responses_ttl = std::chrono::hours(24);
  return p;
}

}  // namespace bulwark::nats_auth
