#pragma once
// NATS decentralized auth ("operator mode") without nsc: Ed25519 nkeys, operator/account/user
// JWTs, .creds files and the nats-server config fragment that trusts them. Pure: no socket, no
// file; nats-server (resolver MEMORY) is the verifier. Formats: nkeys are base32(prefix + key +
// crc16-xmodem little-endian), seeds carry a two-byte prefix; a JWT is
// base64url(header).base64url(claims).base64url(ed25519 signature of the first two parts).
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace bulwark::nats_auth {

enum class KeyType { kOperator, kAccount, kUser, kServer };

// base32 (RFC 4648 alphabet, no padding) as nkeys use it. decode throws invalid_argument.
std::string base32_encode(std::string_view bytes);
std::string base32_decode(std::string_view text);
std::string base64url_encode(std::string_view bytes);  // no padding
std::string base64url_decode(std::string_view text);
uint16_t crc16_xmodem(std::string_view bytes);

class KeyPair {
 public:
  static KeyPair create(KeyType type);  // a fresh key from the kernel's random source
  // From an encoded seed ("SO...", "SA...", "SU..."); throws invalid_argument if malformed.
  static KeyPair from_seed(std::string_view encoded_seed);
  KeyType type() const { return type_; }
  std::string public_key() const;    // "O...", "A...", "U..." (56 characters)
  std::string encoded_seed() const;  // "SO...", "SA...", "SU..." (58 characters): a secret
  std::string sign(std::string_view data) const;  // 64-byte Ed25519 signature

 private:
  KeyPair(KeyType t, std::string seed, std::string pub) : type_(t), seed_(std::move(seed)), pub_(std::move(pub)) {}
  KeyType type_;
  std::string seed_;  // 32 raw bytes
  std::string pub_;   // 32 raw bytes
};

// The raw 32-byte key of an encoded public nkey; throws invalid_argument when the checksum or
// prefix is wrong or, with `expected`, the key is of another type.
std::string decode_public_key(std::string_view encoded, std::optional<KeyType> expected = std::nullopt);
bool verify(std::string_view encoded_public_key, std::string_view data, std::string_view signature);

// What a user may publish and subscribe to (NATS subject patterns). Empty allow lists mean
// "nothing" here, never "everything": every Bulwark user names what it needs.
struct Permissions {
  std::vector<std::string> pub_allow, pub_deny, sub_allow, sub_deny;
  // Lets the user publish to the reply subject of each request it received, this many times
  // (-1 = no limit) within `responses_ttl` (0 = nats-server's default, 2 min): streamed replies.
  bool allow_responses = false;
  int responses_max = -1;
  std::chrono::seconds responses_ttl{0};
};

// Claims as nats-server expects them (nats.jwt v2). `iat`/`exp` are Unix seconds; exp 0 = never.
std::string operator_jwt(const KeyPair& op, const std::string& name, const std::string& system_account, int64_t iat);
std::string account_jwt(const KeyPair& op, const std::string& account_public_key, const std::string& name,
                        bool jetstream, int64_t iat);
std::string user_jwt(const KeyPair& account, const std::string& user_public_key, const std::string& name,
                     const Permissions& p, int64_t iat, int64_t exp = 0);

// The claims of a JWT after checking its signature against its issuer (`iss`); throws
// invalid_argument when it is malformed or the signature does not verify.
nlohmann::json verified_claims(std::string_view jwt);

// A new user (fresh key) signed by account, as a .creds file's text.
std::string new_user_creds(const KeyPair& account, const std::string& name, const Permissions& p, int64_t iat,
                           int64_t exp = 0);

// A whole file (a seed, a .creds file) without trailing whitespace; Error naming field (the flag)
// when it cannot be read.
std::string read_text_file(const std::string& path, const std::string& field);
// Writes a file mode 0600 (replacing it atomically); Error when it cannot.
void write_secret_file(const std::string& path, const std::string& text);

// A .creds file (what nats CLI tools and libnats read) and back.
std::string creds_file(const std::string& user_jwt, const std::string& user_seed);
struct Creds {
  std::string jwt;
  std::string seed;
};
Creds parse_creds(std::string_view text);  // throws invalid_argument naming what is missing

// nats-server config lines that trust `operator_jwt` and preload `accounts` (public key -> JWT).
std::string server_config(const std::string& operator_jwt, const std::string& system_account,
                          const std::map<std::string, std::string>& accounts);

// What each Bulwark service's user may do (docs/subjects.md, "Who may use what"). service is the
// health name: "gateway-api", "scheduler", "policy-service", "privacy-router", "driver-<kind>".
// Throws invalid_argument for an unknown one.
Permissions service_permissions(const std::string& service);
// What one sandbox's supervisor may do: only subjects carrying its own sandbox_id, and replies on
// its own inbox prefix (sandbox_inbox_prefix), which the services' "_INBOX.>" still covers.
Permissions sandbox_permissions(const std::string& sandbox_id);
std::string sandbox_inbox_prefix(const std::string& sandbox_id);  // "_INBOX.<sandbox_id>"
// Every service name service_permissions knows.
std::vector<std::string> service_names();

}  // namespace bulwark::nats_auth
