#pragma once
#include <google/protobuf/timestamp.pb.h>

#include <string>

namespace bulwark {

inline constexpr const char* kVersion = "0.1.0";

// n random bytes from the kernel as lowercase hex.
std::string random_hex(size_t bytes);
google::protobuf::Timestamp now_timestamp();
int64_t to_millis(const google::protobuf::Timestamp& t);
std::string hostname();
// A subject token: lowercase letters, digits, '-' and '_' only (no '.', '*', '>' or spaces).
bool is_subject_token(const std::string& s);
// A DNS-label-like name: 1-63 chars of [a-z0-9-], starting and ending alphanumeric.
bool is_dns_label(const std::string& s);

// A fresh directory under the temp dir ($TMPDIR or /tmp), mode 0700, removed with everything in
// it when destroyed. Throws Error with errno when it cannot be made.
class TempDir {
 public:
  // base: the parent directory; "" = the temp dir.
  explicit TempDir(const std::string& prefix = "bulwark", const std::string& base = "");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// "0" or "" -> 0; "512m", "2g", "1048576", "64k" (binary units) -> bytes. Throws Error
// (invalid_argument, field) on anything else.
int64_t parse_bytes(const std::string& text, const std::string& field);

// Percent-encodes what may not stand in a URL path segment, keeping '/' (an image name's, which
// the Docker and Podman routers take as is), ':' and '@'.
std::string url_path_escape(const std::string& s);

}  // namespace bulwark
