#include "shared/util.h"

#include <string_view>

#include <cstdio>

#include <climits>

#include <cstdint>

#include <cctype>

#include <map>

#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "shared/error.h"

namespace bulwark {

std::string random_hex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(Code::kInternal, errno_text("getrandom", errno));
    got += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

google::protobuf::Timestamp now_timestamp() {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                std::chrono::system_clock::now().time_since_epoch()).count();
  google::protobuf::Timestamp t;
  t.set_seconds(ns / 1000000000);
  t.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return t;
}

int64_t to_millis(const google::protobuf::Timestamp& t) { return t.seconds() * 1000 + t.nanos() / 1000000; }

std::string hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

bool is_subject_token(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
  return true;
}

bool is_dns_label(const std::string& s) {
  if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

TempDir::TempDir(const std::string& prefix, const std::string& base) {
  std::filesystem::path parent = base.empty() ? std::filesystem::temp_directory_path() : std::filesystem::path(base);
  std::string tmpl = (parent / (prefix + "-XXXXXX")).string();
  if (!::mkdtemp(tmpl.data())) throw Error(Code::kInternal, errno_text("mkdtemp " + tmpl, errno));
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

int64_t parse_bytes(const std::string& text, const std::string& field) {
  if (text.empty()) return 0;
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  std::string unit = text.substr(digits);
  for (char& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (!unit.empty() && unit.back() == 'b') unit.pop_back();  // "512mb" as "512m"
  static const std::map<std::string, int> shift = {{"", 0}, {"k", 10}, {"m", 20}, {"g", 30}, {"t", 40}};
  auto it = shift.find(unit);
  if (digits == 0 || digits > 15 || it == shift.end())
    throw Error(Code::kInvalidArgument, field + ": '" + text + "' is not a size such as 512m, 2g or 1048576", field);
  int64_t n = std::stoll(text.substr(0, digits));
  if (n > (INT64_MAX >> it->second)) throw Error(Code::kInvalidArgument, field + ": '" + text + "' is too large", field);
  return n << it->second;
}

std::string url_path_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (std::isalnum(static_cast<unsigned char>(ch)) || std::string_view("-._~/:@").find(ch) != std::string_view::npos) {
      out.push_back(ch);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(ch));
      out += buf;
    }
  }
  return out;
}

}  // namespace bulwark
