#include "supervisor/proxy/http_body.h"

#include <algorithm>
#include <charconv>

namespace bulwark::proxy {
namespace {

constexpr size_t kMaxChunkLine = 4096;   // a chunk-size line, extensions included
constexpr size_t kMaxTrailers = 64 * 1024;
constexpr int kMaxSizeDigits = 15;        // below 2^60: no overflow, and far beyond any real chunk

char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return to_lower(x) == to_lower(y); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_ctl(char ch) {
  auto c = static_cast<unsigned char>(ch);
  return (c < 0x20 && c != '\t') || c == 0x7f;
}

// Each comma-separated element of every header called `name`, trimmed, in order.
std::vector<std::string_view> list_values(const std::vector<HeaderField>& headers, std::string_view name) {
  std::vector<std::string_view> out;
  for (const auto& f : headers) {
    if (!iequals(f.name, name)) continue;
    std::string_view v = f.value;
    while (!v.empty()) {
      size_t comma = std::min(v.find(','), v.size());
      if (auto item = trim(v.substr(0, comma)); !item.empty()) out.push_back(item);
      v.remove_prefix(std::min(comma + 1, v.size()));
    }
  }
  return out;
}

// One Content-Length however often it is repeated, or nullopt when the values are not all the
// same decimal number.
std::optional<uint64_t> content_length(const std::vector<HeaderField>& headers, bool* present) {
  auto values = list_values(headers, "Content-Length");
  *present = !values.empty();
  std::optional<uint64_t> n;
  for (auto v : values) {
    uint64_t x = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (ec != std::errc() || end != v.data() + v.size() || (n && *n != x)) return std::nullopt;
    n = x;
  }
  return n;
}

}  // namespace

BodyFramer::BodyFramer(Kind k, uint64_t n, bool reencode) : kind_(k), total_(n), remaining_(n), reencode_(reencode) {
  if (k == Kind::kNone || (k == Kind::kLength && n == 0))
    state_ = State::kDone;
  else if (k == Kind::kChunked)
    state_ = State::kSize;
  else
    state_ = State::kData;
}

size_t BodyFramer::fail(std::string why) {
  state_ = State::kFailed;
  error_ = std::move(why);
  return 0;
}

size_t BodyFramer::feed(std::string_view in, std::string* out) {
  if (state_ == State::kDone || state_ == State::kFailed) return 0;
  if (kind_ == Kind::kUntilClose) {
    out->append(in);
    return in.size();
  }
  if (kind_ == Kind::kLength) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size()));
    out->append(in.substr(0, n));
    remaining_ -= n;
    if (remaining_ == 0) state_ = State::kDone;
    return n;
  }
  size_t i = 0;
  while (i < in.size() && state_ != State::kDone && state_ != State::kFailed) {
    const char c = in[i];
    switch (state_) {
      case State::kSize: {
        int d = hex_digit(c);
        if (d >= 0) {
          if (++size_digits_ > kMaxSizeDigits) return fail("chunk size too large");
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(d);
        } else if (size_digits_ == 0) {
          return fail("chunk size is not a hexadecimal number");
        } else if (c == ' ' || c == '\t') {
          state_ = State::kSizeSpace;
        } else if (c == ';') {
          state_ = State::kExt;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else {
          return fail("unexpected character after the chunk size");
        }
        break;
      }
      case State::kSizeSpace:
        if (c == ';')
          state_ = State::kExt;
        else if (c == '\r')
          state_ = State::kSizeLf;
        else if (c != ' ' && c != '\t')
          return fail("unexpected character after the chunk size");
        break;
      case State::kExt:
        if (c == '\r')
          state_ = State::kSizeLf;
        else if (is_ctl(c))
          return fail("control character in a chunk extension");
        break;
      case State::kSizeLf:
        if (c != '\n') return fail("chunk size line not ended by CRLF");
        size_digits_ = 0;
        line_bytes_ = 0;
        if (remaining_ == 0) {
          state_ = State::kTrailer;
        } else {
          state_ = State::kData;
          if (reencode_) {
            char hex[24];
            auto r = std::to_chars(hex, hex + sizeof hex, remaining_, 16);
            out->append(hex, r.ptr).append("\r\n");
          }
        }
        break;
      case State::kData: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size() - i));
        if (reencode_ || decode_) out->append(in.substr(i, n));
        remaining_ -= n;
        i += n;
        if (remaining_ == 0) state_ = State::kDataCr;
        continue;  // i advanced already
      }
      case State::kDataCr:
        if (c != '\r') return fail("chunk data not followed by CRLF");
        state_ = State::kDataLf;
        break;
      case State::kDataLf:
        if (c != '\n') return fail("chunk data not followed by CRLF");
        if (reencode_) out->append("\r\n");
        state_ = State::kSize;
        break;
      case State::kTrailer:
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (is_ctl(c)) {
          return fail("control character in the chunked trailer");
        } else {
          ++line_bytes_;
          if (++trailer_bytes_ > kMaxTrailers) return fail("chunked trailer section too large");
        }
        break;
      case State::kTrailerLf:
        if (c != '\n') return fail("trailer line not ended by CRLF");
        if (line_bytes_ == 0) {
          state_ = State::kDone;
          if (reencode_) out->append("0\r\n\r\n");  // trailers dropped: nothing may ride behind the body
        } else {
          line_bytes_ = 0;
          state_ = State::kTrailer;
        }
        break;
      case State::kDone:
      case State::kFailed:
        break;
    }
    if ((state_ == State::kSize || state_ == State::kSizeSpace || state_ == State::kExt) &&
        ++line_bytes_ > kMaxChunkLine)
      return fail("chunk size line too long");
    ++i;
  }
  if (!reencode_ && !decode_) out->append(in.substr(0, i));
  return i;
}

std::optional<BodyFramer> request_framing(const RequestHead& head, std::string* error) {
  auto codings = list_values(head.headers, "Transfer-Encoding");
  if (!codings.empty()) {
    if (codings.size() != 1 || !iequals(codings[0], "chunked")) {
      *error = "Transfer-Encoding other than plain \"chunked\" is not accepted on an inspected request";
      return std::nullopt;
    }
    return BodyFramer::chunked(true);
  }
  bool present = false;
  auto n = content_length(head.headers, &present);
  if (present && !n) {
    *error = "Content-Length is not one decimal number";
    return std::nullopt;
  }
  return n ? BodyFramer::length(*n) : BodyFramer::none();
}

std::optional<BodyFramer> response_framing(const ResponseHead& head, std::string_view request_method,
                                           std::string* error) {
  if (iequals(request_method, "HEAD") || head.status / 100 == 1 || head.status == 204 || head.status == 304)
    return BodyFramer::none();
  auto codings = list_values(head.headers, "Transfer-Encoding");
  if (!codings.empty())
    return iequals(codings.back(), "chunked") ? BodyFramer::chunked(false) : BodyFramer::until_close();
  bool present = false;
  auto n = content_length(head.headers, &present);
  if (present && !n) {
    *error = "the response's Content-Length is not one decimal number";
    return std::nullopt;
  }
  return n ? BodyFramer::length(*n) : BodyFramer::until_close();
}

bool connection_has(const std::vector<HeaderField>& headers, std::string_view token) {
  auto values = list_values(headers, "Connection");
  return std::any_of(values.begin(), values.end(), [&](std::string_view v) { return iequals(v, token); });
}

std::string upstream_request_head(const RequestHead& head, std::string_view target, std::string_view host_header,
                                  const BodyFramer& body, bool close) {
  std::vector<std::string_view> drop = {"connection", "keep-alive",        "proxy-connection", "proxy-authorization",
                                        "te",         "upgrade",           "host",             "content-length",
                                        "transfer-encoding", "trailer"};
  for (auto token : list_values(head.headers, "Connection")) drop.push_back(token);
  std::string out;
  out.reserve(512);
  out.append(head.method).append(" ").append(target).append(" HTTP/1.").append(std::to_string(head.version_minor));
  out.append("\r\nHost: ").append(host_header).append("\r\n");
  for (const auto& f : head.headers)
    if (std::none_of(drop.begin(), drop.end(), [&](std::string_view d) { return iequals(d, f.name); }))
      out.append(f.name).append(": ").append(f.value).append("\r\n");
  if (body.kind() == BodyFramer::Kind::kLength)
    out.append("Content-Length: ").append(std::to_string(body.declared_length())).append("\r\n");
  else if (body.kind() == BodyFramer::Kind::kChunked)
    out.append("Transfer-Encoding: chunked\r\n");
  if (close) out.append("Connection: close\r\n");
  out.append("\r\n");
  return out;
}

}  // namespace bulwark::proxy
