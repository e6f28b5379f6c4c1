#pragma once
// Provider credentials encrypted at rest: AES-256-GCM (OpenSSL EVP) with keys from a key ring file
// that only the gateway's user can read. The database alone never reveals a secret.
//
// Key ring: one key a line, 64 hex digits (32 bytes). The FIRST line is the current key (it seals);
// every line opens. Rotation: prepend `openssl rand -hex 32`, restart the gateway (it re-seals every
// provider with the new key), then remove the old line.
//
// Sealed form: "v1:" + key id (first 8 hex digits of SHA-256 of the key) + ":" +
// base64(12-byte nonce | ciphertext | 16-byte tag). The caller's AAD (the provider name) is
// authenticated, so a sealed value copied to another name does not open.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::gateway {

class SecretBox {
 public:
  using Key = std::array<uint8_t, 32>;

  // Reads the key ring at path, creating it with one random key (mode 0600, O_EXCL) when it does not
  // exist. Throws Error naming the path and the fix when the file is readable or writable by group
  // or others, or malformed.
  static SecretBox load(const std::string& path);
  // keys[0] is the current key; path is only named in messages.
  SecretBox(std::vector<Key> keys, std::string path);

  std::string seal(std::string_view plain, std::string_view aad) const;
  // Throws Error(kInternal) naming the key id and the key file when the key is not in the ring, or
  // when the value does not authenticate (altered, or sealed under another AAD).
  std::string open(std::string_view sealed, std::string_view aad) const;
  // The key id a sealed value names ("" when it is not in the sealed form).
  static std::string key_id_of(std::string_view sealed);
  // True when sealed was made with the current key (nothing to re-seal).
  bool is_current(std::string_view sealed) const { return key_id_of(sealed) == ids_.front(); }

  const std::string& current_key_id() const { return ids_.front(); }
  const std::string& path() const { return path_; }

 private:
  std::vector<Key> keys_;
  std::vector<std::string> ids_;
  std::string path_;
};

// The key ring's default place: provider.key in the directory of the database file.
std::string default_key_file(const std::string& db_path);

}  // namespace bulwark::gateway
