#include "supervisor/proxy/http_head.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

namespace bulwark::proxy {
namespace {

bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// RFC 9110 token characters (methods, header names).
bool is_tchar(unsigned char c) {
  if (is_digit(c) || is_alpha(c)) return true;
  constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
  return kExtra.find(static_cast<char>(c)) != std::string_view::npos;
}

char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), to_lower);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return to_lower(x) == to_lower(y); });
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Client bytes quoted in an error body: printable ASCII only and short, so a 400 never echoes
// binary junk or a megabyte back.
std::string quote(std::string_view s) {
  constexpr size_t kMax = 60;
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  if (s.size() > kMax) out += "...";
  return out + "\"";
}

bool all_tchars(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return is_tchar(static_cast<unsigned char>(c)); });
}

// A head split into its start line and header fields. Returns kComplete, kIncomplete, kTooLarge
// or kBad (with *error); start_line is set whenever the first line is complete.
struct RawHead {
  std::string_view start_line;
  std::vector<HeaderField> headers;
  size_t end = 0;
};

ParseStatus split_head(std::string_view buf, size_t max, RawHead* out, std::string* error) {
  size_t end = find_head_end(buf, 0);
  if (end == std::string_view::npos) return buf.size() > max ? ParseStatus::kTooLarge : ParseStatus::kIncomplete;
  if (end > max) return ParseStatus::kTooLarge;
  out->end = end;
  size_t pos = 0;
  bool first = true;
  while (pos < end) {
    size_t nl = buf.find('\n', pos);
    std::string_view line = buf.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find('\r') != std::string_view::npos) {
      *error = "bare CR inside a line of the head";
      return ParseStatus::kBad;
    }
    if (first) {
      out->start_line = line;
      first = false;
      continue;
    }
    if (line.empty()) break;  // the blank line that ends the head
    if (line.front() == ' ' || line.front() == '\t') {
      *error = "obsolete line folding (a header line starting with whitespace) is not accepted";
      return ParseStatus::kBad;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      *error = "header line without a colon: " + quote(line);
      return ParseStatus::kBad;
    }
    std::string_view name = line.substr(0, colon);
    if (name.empty()) {
      *error = "header line with an empty name: " + quote(line);
      return ParseStatus::kBad;
    }
    if (name.back() == ' ' || name.back() == '\t') {
      // RFC 9112 5.1: must be rejected, a classic request-smuggling vector.
      *error = "whitespace between header name and colon in " + quote(name);
      return ParseStatus::kBad;
    }
    if (!all_tchars(name)) {
      *error = "invalid character in header name " + quote(name);
      return ParseStatus::kBad;
    }
    std::string_view value = trim_ows(line.substr(colon + 1));
    for (char ch : value) {
      unsigned char c = static_cast<unsigned char>(ch);
      if (c != '\t' && (c < 0x20 || c == 0x7f)) {
        *error = "control character in the value of header " + quote(name);
        return ParseStatus::kBad;
      }
    }
    out->headers.push_back({std::string(name), std::string(value)});
  }
  return ParseStatus::kComplete;
}

// HTTP/1.0 -> 0, HTTP/1.1 -> 1, else nullopt with *error.
std::optional<int> parse_version(std::string_view v, std::string* error) {
  if (v == "HTTP/1.1") return 1;
  if (v == "HTTP/1.0") return 0;
  if (v.rfind("HTTP/", 0) == 0)
    *error = "unsupported HTTP version " + quote(v) + " (this proxy speaks HTTP/1.0 and HTTP/1.1)";
  else
    *error = "the line does not end in an HTTP version: " + quote(v);
  return std::nullopt;
}

// Fills method, target, version_minor from a complete request line.
bool parse_request_line(std::string_view line, RequestHead* h, std::string* error) {
  if (line.empty()) {
    *error = "empty request line";
    return false;
  }
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    *error = "request line is not METHOD TARGET HTTP/1.1: " + quote(line);
    return false;
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (method.empty() || !all_tchars(method)) {
    *error = "request line does not start with an HTTP method: " + quote(line);
    return false;
  }
  if (target.empty()) {
    *error = "empty request target";
    return false;
  }
  for (char ch : target) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f) {
      *error = "control character or whitespace in the request target";
      return false;
    }
  }
  auto minor = parse_version(line.substr(sp2 + 1), error);
  if (!minor) return false;
  h->method = std::string(method);
  h->target = std::string(target);
  h->version_minor = *minor;
  return true;
}

// Checks what can already be known about an incomplete first line, so junk (TLS sent to a
// plain-HTTP proxy, binary protocols) is refused at once instead of after 64 KiB or a timeout.
std::optional<std::string> early_first_line_error(std::string_view buf) {
  if (buf.empty()) return std::nullopt;
  if (static_cast<unsigned char>(buf[0]) == 0x16)
    return "the client sent TLS to a plain-HTTP proxy (use an http:// proxy URL; https:// sites "
           "still work through CONNECT)";
  size_t nl = buf.find('\n');
  if (nl != std::string_view::npos) {
    std::string_view line = buf.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    RequestHead h;
    std::string error;
    if (!parse_request_line(line, &h, &error)) return error;
    return std::nullopt;
  }
  std::string_view method = buf.substr(0, buf.find(' '));
  if (!all_tchars(method)) return "request line does not start with an HTTP method: " + quote(buf);
  return std::nullopt;
}

// Sets form, host, port, path from method and target.
bool interpret_target(RequestHead* h, RequestContext context, std::string* error) {
  const std::string& t = h->target;
  const bool origin = context == RequestContext::kOrigin;
  if (origin && h->method == "CONNECT") {
    *error = "CONNECT inside an inspected tunnel is not accepted";
    return false;
  }
  if (origin && t.front() == '/') {
    h->form = TargetForm::kOrigin;
    h->path = t;
    return true;
  }
  if (h->method == "CONNECT") {
    std::string why;
    auto a = parse_authority(t, 0, &why);
    if (!a) {
      *error = "CONNECT target " + quote(t) + ": " + why;
      return false;
    }
    h->form = TargetForm::kAuthority;
    h->host = a->host;
    h->port = a->port;
    return true;
  }
  if (t.front() == '/') {
    *error = "origin-form target " + quote(t) +
             ": a proxy needs an absolute URL (http://host/path) or CONNECT host:port; is the client "
             "configured to use this address as its HTTP proxy?";
    return false;
  }
  if (t == "*") {
    *error = "asterisk-form target (OPTIONS *) cannot be proxied";
    return false;
  }
  size_t sep = t.find("://");
  if (sep == std::string::npos) {
    *error = "request target " + quote(t) + " is neither an absolute http:// URL nor CONNECT host:port";
    return false;
  }
  std::string scheme = lower(std::string_view(t).substr(0, sep));
  if (origin && scheme != "http" && scheme != "https") {
    *error = "unsupported URL scheme " + quote(scheme);
    return false;
  }
  if (!origin && scheme == "https") {
    *error = "https:// URLs are not forwarded in plain text: use CONNECT (clients do so for https:// "
             "when given an http:// proxy URL)";
    return false;
  }
  if (!origin && scheme != "http") {
    *error = "unsupported URL scheme " + quote(scheme) + " (only http:// is forwarded; https:// goes through CONNECT)";
    return false;
  }
  std::string_view rest = std::string_view(t).substr(sep + 3);
  size_t auth_end = std::min(rest.find_first_of("/?#"), rest.size());
  std::string_view authority = rest.substr(0, auth_end);
  if (authority.find('@') != std::string_view::npos) {
    *error = "user info (user@host) in the URL is not accepted";
    return false;
  }
  std::string why;
  auto a = parse_authority(authority, scheme == "https" ? 443 : 80, &why);
  if (!a) {
    *error = "URL " + quote(t) + ": " + why;
    return false;
  }
  std::string_view path = rest.substr(auth_end);
  path = path.substr(0, path.find('#'));  // fragments are never sent; drop one if a client does
  h->form = TargetForm::kAbsolute;
  h->host = a->host;
  h->port = a->port;
  if (path.empty() || path.front() == '?')
    h->path = "/" + std::string(path);
  else
    h->path = std::string(path);
  return true;
}

// One consistent body length or none: conflicting framing is how requests get smuggled.
bool check_framing(const RequestHead& h, std::string* error) {
  const std::string* cl = nullptr;
  bool te = false;
  for (const auto& f : h.headers) {
    if (iequals(f.name, "Transfer-Encoding")) te = true;
    if (!iequals(f.name, "Content-Length")) continue;
    if (f.value.empty() || !std::all_of(f.value.begin(), f.value.end(), [](char c) { return is_digit(c); })) {
      *error = "Content-Length is not a number: " + quote(f.value);
      return false;
    }
    if (cl && *cl != f.value) {
      *error = "conflicting Content-Length headers";
      return false;
    }
    cl = &f.value;
  }
  if (cl && te) {
    *error = "both Content-Length and Transfer-Encoding are set";
    return false;
  }
  return true;
}

// Lower-cased names of the headers that only concern one connection: the fixed set plus those
// listed in Connection. Framing headers are never dropped, because the body is relayed verbatim.
std::vector<std::string> hop_by_hop(const std::vector<HeaderField>& headers, std::vector<std::string> fixed) {
  for (const auto& f : headers) {
    if (!iequals(f.name, "Connection")) continue;
    std::string_view v = f.value;
    while (!v.empty()) {
      size_t comma = std::min(v.find(','), v.size());
      std::string token = lower(trim_ows(v.substr(0, comma)));
      v.remove_prefix(std::min(comma + 1, v.size()));
      if (token.empty() || token == "content-length" || token == "transfer-encoding" || token == "host") continue;
      fixed.push_back(std::move(token));
    }
  }
  return fixed;
}

bool listed(const std::vector<std::string>& names, const std::string& name) {
  return std::any_of(names.begin(), names.end(), [&](const std::string& n) { return iequals(n, name); });
}

}  // namespace

const std::string* RequestHead::header(std::string_view name) const {
  for (const auto& f : headers)
    if (iequals(f.name, name)) return &f.value;
  return nullptr;
}

size_t find_head_end(std::string_view buf, size_t from) {
  // The blank line is "\n\n" or "\n\r\n"; start one byte early so a '\n' already seen still counts.
  for (size_t i = from == 0 ? 0 : from - 1; i < buf.size(); ++i) {
    i = buf.find('\n', i);
    if (i == std::string_view::npos) break;
    if (i + 1 < buf.size() && buf[i + 1] == '\n') return i + 2;
    if (i + 2 < buf.size() && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
}

RequestParse parse_request_head(std::string_view buf, size_t max_head_bytes, RequestContext context) {
  RequestParse r;
  RawHead raw;
  r.status = split_head(buf, max_head_bytes, &raw, &r.error);
  if (r.status == ParseStatus::kTooLarge) {
    r.error = "request line and headers exceed " + std::to_string(max_head_bytes) + " bytes";
    return r;
  }
  if (r.status == ParseStatus::kIncomplete) {
    if (auto e = early_first_line_error(buf)) {
      r.status = ParseStatus::kBad;
      r.error = *e;
    }
    return r;
  }
  if (r.status == ParseStatus::kBad) return r;
  RequestHead& h = r.head;
  if (!parse_request_line(raw.start_line, &h, &r.error) || !interpret_target(&h, context, &r.error)) {
    r.status = ParseStatus::kBad;
    return r;
  }
  h.headers = std::move(raw.headers);
  if (!check_framing(h, &r.error)) {
    r.status = ParseStatus::kBad;
    return r;
  }
  h.head_bytes = raw.end;
  return r;
}

std::optional<Authority> parse_authority(std::string_view s, uint16_t default_port, std::string* error) {
  auto fail = [&](std::string m) -> std::optional<Authority> {
    if (error) *error = std::move(m);
    return std::nullopt;
  };
  if (s.empty()) return fail("empty host");
  std::string_view host, port;
  bool has_port = false;
  if (s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos) return fail("unterminated IPv6 literal (no ']')");
    host = s.substr(1, close - 1);
    std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return fail("unexpected characters after ']': " + quote(rest));
      port = rest.substr(1);
      has_port = true;
    }
    if (host.find('%') != std::string_view::npos) return fail("IPv6 zone ids are not accepted");
    in6_addr a6;
    if (::inet_pton(AF_INET6, std::string(host).c_str(), &a6) != 1)
      return fail(quote(host) + " is not an IPv6 address");
  } else {
    size_t colon = s.rfind(':');
    if (colon != std::string_view::npos) {
      if (s.find(':') != colon) return fail("an IPv6 address must be in brackets, as [addr]:port");
      host = s.substr(0, colon);
      port = s.substr(colon + 1);
      has_port = true;
    } else {
      host = s;
    }
    if (host.empty()) return fail("empty host");
    if (host.size() > 253) return fail("host name longer than 253 characters");
    for (char ch : host) {
      unsigned char c = static_cast<unsigned char>(ch);
      if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '.' && c != '_')
        return fail("invalid character in host " + quote(host));
    }
  }
  uint16_t p = default_port;
  if (!has_port || port.empty()) {
    if (default_port == 0) return fail("no port (the form is host:port)");
  } else {
    unsigned n = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
    if (port.size() > 5 || ec != std::errc() || end != port.data() + port.size())
      return fail("bad port " + quote(port));
    if (n == 0 || n > 65535) return fail("port " + std::to_string(n) + " out of range 1-65535");
    p = static_cast<uint16_t>(n);
  }
  return Authority{lower(host), p};
}

std::string format_authority(const std::string& host, uint16_t port) {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

std::string forward_request_head(const RequestHead& head) {
  auto drop = hop_by_hop(head.headers, {"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                                        "te", "upgrade", "host"});
  std::string out = head.method + " " + head.path + " HTTP/1." + std::to_string(head.version_minor) + "\r\n";
  std::string host = format_authority(head.host, head.port);
  if (head.port == 80) host.erase(host.rfind(':'));  // the default port is left out of Host
  out += "Host: " + host + "\r\n";
  for (const auto& f : head.headers)
    if (!listed(drop, f.name)) out += f.name + ": " + f.value + "\r\n";
  out += "Connection: close\r\n\r\n";
  return out;
}

ResponseParse parse_response_head(std::string_view buf, size_t max_head_bytes) {
  ResponseParse r;
  RawHead raw;
  r.status = split_head(buf, max_head_bytes, &raw, &r.error);
  if (r.status == ParseStatus::kTooLarge) r.error = "response head exceeds " + std::to_string(max_head_bytes) + " bytes";
  if (r.status != ParseStatus::kComplete) return r;
  std::string_view line = raw.start_line;
  size_t sp1 = line.find(' ');
  auto minor = parse_version(line.substr(0, sp1), &r.error);
  std::string_view code = sp1 == std::string_view::npos ? std::string_view() : line.substr(sp1 + 1, 3);
  if (!minor || code.size() != 3 || !std::all_of(code.begin(), code.end(), [](char c) { return is_digit(c); }) ||
      (line.size() > sp1 + 4 && line[sp1 + 4] != ' ')) {
    r.status = ParseStatus::kBad;
    r.error = "bad status line " + quote(line);
    return r;
  }
  r.head.version_minor = *minor;
  r.head.status = std::stoi(std::string(code));
  r.head.reason = line.size() > sp1 + 5 ? std::string(line.substr(sp1 + 5)) : "";
  r.head.headers = std::move(raw.headers);
  r.head.head_bytes = raw.end;
  return r;
}

std::string client_response_head(const ResponseHead& head) {
  auto drop = hop_by_hop(head.headers, {"connection", "keep-alive", "proxy-connection", "upgrade"});
  std::string out = "HTTP/1." + std::to_string(head.version_minor) + " " + std::to_string(head.status) + " " +
                    head.reason + "\r\n";
  for (const auto& f : head.headers)
    if (!listed(drop, f.name)) out += f.name + ": " + f.value + "\r\n";
  out += "Connection: close\r\n\r\n";
  return out;
}

}  // namespace bulwark::proxy
