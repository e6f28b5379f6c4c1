#include "services/privacy-router/backend.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <algorithm>
#include <condition_variable>
#include <stop_token>
#include <thread>

#include "shared/error.h"

namespace bulwark::privacy_router {
namespace {

using Clock = std::chrono::steady_clock;

int64_t ticks(Clock::time_point t) { return t.time_since_epoch().count(); }

std::string seconds_text(std::chrono::milliseconds d) {
  auto ms = d.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

// What is kept of an upstream's error body: one line, short, and never the key we sent it.
std::string excerpt(std::string text, const std::string& secret) {
  if (!secret.empty())
    for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) text.replace(at, secret.size(), "****");
  for (char& c : text)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  text.erase(std::unique(text.begin(), text.end(), [](char a, char b) { return a == ' ' && b == ' '; }), text.end());
  while (!text.empty() && text.back() == ' ') text.pop_back();
  if (text.size() > 200) text = text.substr(0, 200) + "...";
  return text;
}

std::string describe(httplib::Error e, const UpstreamRequest& r, const std::string& ip,
                     std::chrono::milliseconds connect_timeout) {
  const std::string where = r.url.origin() + (ip.empty() ? "" : " (" + ip + ")");
  switch (e) {
    case httplib::Error::Connection:
      return "cannot connect to " + where;
    case httplib::Error::ConnectionTimeout:
      return "no connection to " + where + " within " + seconds_text(connect_timeout) + " (--connect-timeout)";
    case httplib::Error::SSLConnection:
      return "TLS handshake with " + where + " failed";
    case httplib::Error::SSLServerVerification:
      return "the TLS certificate of " + where +
             " is not trusted by the system roots (an operator's CA goes in --backend-ca)";
    case httplib::Error::SSLLoadingCerts:
      return "cannot load the trusted CA certificates to check " + where;
    case httplib::Error::Read:
      return "the connection to " + where + " closed before a response";
    case httplib::Error::Write:
      return "cannot send the request to " + where;
    default:
      return "request to " + where + " failed: " + httplib::to_string(e);
  }
}

std::string openssl_error() {
  unsigned long e = ERR_get_error();
  if (!e) return "no PEM certificate found";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

}  // namespace

std::string BaseUrl::origin() const {
  const bool v6 = host.find(':') != std::string::npos;
  return std::string(https ? "https" : "http") + "://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

BaseUrl parse_base_url(const std::string& url) {
  auto bad = [&](const std::string& why) {
    return Error(Code::kInvalidArgument, "base_url '" + url + "' " + why, "base_url");
  };
  BaseUrl u;
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    u.https = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else {
    throw bad("must start with http:// or https://");
  }
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  u.prefix = slash == std::string::npos ? "" : rest.substr(slash);
  if (u.prefix.find_first_of("?#") != std::string::npos) throw bad("may not carry a query or fragment");
  while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
  if (authority.find('@') != std::string::npos) throw bad("may not carry user info (credentials belong in the provider)");
  std::string port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) throw bad("has an unclosed '[' in its host");
    u.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') throw bad("has junk after its IPv6 host");
      port = authority.substr(close + 2);
    }
  } else {
    size_t colon = authority.rfind(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) port = authority.substr(colon + 1);
  }
  if (u.host.empty()) throw bad("has no host");
  if (port.empty()) {
    u.port = u.https ? 443 : 80;
  } else {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
      throw bad("has a bad port '" + port + "'");
    u.port = std::stoi(port);
    if (u.port < 1 || u.port > 65535) throw bad("has a port out of range");
  }
  return u;
}

std::string upstream_target(const std::string& prefix, const std::string& path_and_query) {
  const bool ends_v1 = prefix.size() >= 3 && prefix.compare(prefix.size() - 3, 3, "/v1") == 0;
  const bool starts_v1 = path_and_query.rfind("/v1/", 0) == 0 || path_and_query == "/v1" ||
                         path_and_query.rfind("/v1?", 0) == 0;
  if (ends_v1 && starts_v1) return prefix.substr(0, prefix.size() - 3) + path_and_query;
  return prefix + path_and_query;
}

bool is_local_address(const std::string& ip_in) {
  std::string ip = ip_in.substr(0, ip_in.find('%'));  // a link-local zone id, "fe80::1%eth0"
  auto v4_local = [](const unsigned char* b) {
    return b[0] == 127 || b[0] == 10 || (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168) ||
           (b[0] == 169 && b[1] == 254);
  };
  unsigned char b[16];
  if (inet_pton(AF_INET, ip.c_str(), b) == 1) return v4_local(b);
  if (inet_pton(AF_INET6, ip.c_str(), b) != 1) return false;
  static const unsigned char kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(b, b + 16, kLoopback)) return true;
  if (std::equal(b, b + 12, kMapped)) return v4_local(b + 12);
  if ((b[0] & 0xfe) == 0xfc) return true;                 // fc00::/7 unique local
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return true;  // fe80::/10 link-local
  return false;
}

std::vector<std::string> resolve_host(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0) throw Error(Code::kUnavailable, "cannot resolve " + host + ": " + gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(res, freeaddrinfo);
  std::vector<std::string> out;
  for (auto* a = res; a; a = a->ai_next) {
    char buf[NI_MAXHOST];
    if (getnameinfo(a->ai_addr, a->ai_addrlen, buf, sizeof buf, nullptr, 0, NI_NUMERICHOST) != 0) continue;
    if (std::find(out.begin(), out.end(), buf) == out.end()) out.emplace_back(buf);
  }
  if (out.empty()) throw Error(Code::kUnavailable, "cannot resolve " + host + ": no address");
  return out;
}

std::string local_only_violation(const std::string& provider, const std::vector<std::string>& addresses) {
  for (const auto& a : addresses)
    if (!is_local_address(a)) return "local-only backend " + provider + " resolves to public address " + a;
  return "";
}

// ---- Forwarder ----

Forwarder::Forwarder(ForwardOptions o) : o_(std::move(o)) {
  if (o_.backend_ca.empty()) return;
  // Load once now so that a bad file stops the start, not every later call.
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  if (!store || X509_STORE_load_file(store.get(), o_.backend_ca.c_str()) != 1)
    throw Error(Code::kInvalidArgument, "--backend-ca " + o_.backend_ca + ": cannot load PEM certificates: " + openssl_error(),
                "backend-ca");
}

Forwarder::~Forwarder() { abort_all(); }

void Forwarder::abort_all() {
  std::lock_guard lock(mu_);
  aborted_ = true;
  stopping_ = true;
  for (auto* c : active_) c->stop();
  idle_.clear();
}

std::unique_ptr<httplib::ClientImpl> Forwarder::take(const std::string& key, const UpstreamRequest& r,
                                                     const std::string& ip) {
  {
    std::lock_guard lock(mu_);
    auto it = idle_.find(key);
    if (it != idle_.end() && !it->second.empty()) {
      auto c = std::move(it->second.back());
      it->second.pop_back();
      return c;
    }
  }
  std::unique_ptr<httplib::ClientImpl> c;
  if (r.url.https) {
    auto s = std::make_unique<httplib::SSLClient>(r.url.host, r.url.port);
    // Added to the system roots, which httplib loads on the first connection.
    if (!o_.backend_ca.empty() && SSL_CTX_load_verify_locations(s->ssl_context(), o_.backend_ca.c_str(), nullptr) != 1)
      throw Error(Code::kInternal, "cannot load --backend-ca " + o_.backend_ca + ": " + openssl_error());
    c = std::move(s);
  } else {
    c = std::make_unique<httplib::ClientImpl>(r.url.host, r.url.port);
  }
  if (!ip.empty()) c->set_hostname_addr_map({{r.url.host, ip}});
  c->set_connection_timeout(o_.connect_timeout);
  // The watchdog in exchange() enforces the first-byte and idle limits; these only back it up.
  auto longest = std::max(o_.first_byte_timeout, o_.idle_timeout) + std::chrono::seconds(5);
  c->set_read_timeout(longest);
  c->set_write_timeout(longest);
  c->set_keep_alive(true);
  // httplib writes a request's head and body separately: with Nagle the body waits for the
  // server's delayed ACK (40 ms on Linux).
  c->set_tcp_nodelay(true);
  c->set_decompress(false);  // relay the bytes as sent, with their content-encoding header
  c->set_url_encode(false);  // the target was checked already and goes on as the caller wrote it
  c->set_follow_location(false);
  return c;
}

void Forwarder::give_back(const std::string& key, std::unique_ptr<httplib::ClientImpl> c) {
  std::lock_guard lock(mu_);
  if (aborted_) return;
  auto& v = idle_[key];
  if (v.size() < o_.idle_per_origin) v.push_back(std::move(c));
}

ForwardResult Forwarder::forward(const UpstreamRequest& r, const OnHead& on_head, const OnChunk& on_chunk) {
  std::vector<std::string> ips = r.connect_ips;
  if (ips.empty()) ips.push_back("");
  ForwardResult res;
  for (const auto& ip : ips) {
    bool connect_failed = false;
    res = exchange(r, ip, on_head, on_chunk, connect_failed);
    // Only a failed connect is retried on the next address: nothing of the request went out.
    if (!connect_failed) break;
  }
  return res;
}

ForwardResult Forwarder::exchange(const UpstreamRequest& r, const std::string& ip, const OnHead& on_head,
                                  const OnChunk& on_chunk, bool& connect_failed) {
  ForwardResult out;
  const std::string key = r.url.origin() + "|" + ip;
  auto cli = take(key, r, ip);
  {
    std::lock_guard lock(mu_);
    if (aborted_) {
      out.error = "the privacy router is shutting down";
      return out;
    }
    active_.insert(cli.get());
  }

  // The watchdog below cuts the exchange when the deadline passes: first the head's (connecting
  // counts too), then the idle limit, pushed later by every piece of body. Later moves need no
  // wake-up; the one earlier move (head arrived, idle < first-byte) is made under wd_mu and wakes it.
  std::atomic<int64_t> deadline{ticks(Clock::now() + o_.first_byte_timeout)};
  std::atomic<bool> timed_out{false};
  std::mutex wd_mu;
  std::condition_variable_any wd_cv;
  bool head_relayed = false, server_error = false, caller_gone = false;
  std::string error_text;

  httplib::Request req;
  req.method = r.method;
  req.path = r.target;
  for (const auto& [k, v] : r.headers) req.headers.emplace(k, v);
  req.body = r.body;
  req.response_handler = [&](const httplib::Response& resp) {
    out.status = resp.status;
    {
      std::lock_guard lock(wd_mu);
      deadline = ticks(Clock::now() + o_.idle_timeout);
    }
    wd_cv.notify_all();
    if (resp.status >= 500) {
      server_error = true;  // read its body for the reason, relay nothing
      return true;
    }
    Headers h;
    for (const auto& [k, v] : resp.headers) h.emplace_back(k, v);
    head_relayed = true;
    if (!on_head(resp.status, h)) {
      caller_gone = true;
      return false;
    }
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    deadline = ticks(Clock::now() + o_.idle_timeout);
    if (server_error) {
      error_text.append(data, std::min(n, 4096 - std::min<size_t>(4096, error_text.size())));
      return error_text.size() < 4096;  // enough to say why
    }
    if (!on_chunk(std::string_view(data, n))) {
      caller_gone = true;
      return false;
    }
    return true;
  };

  httplib::Response resp;
  httplib::Error err = httplib::Error::Success;
  bool ok = false;
  {
    std::jthread watchdog([&](std::stop_token st) {
      std::unique_lock lock(wd_mu);
      while (!st.stop_requested()) {
        if (stopping_) {
          // abort_all() may have come before send() opened the socket, when stop() has no effect.
          lock.unlock();
          cli->stop();
          return;
        }
        const int64_t seen = deadline.load();
        auto due = Clock::time_point(Clock::duration(seen));
        if (Clock::now() >= due) {
          timed_out = true;
          lock.unlock();
          cli->stop();  // the blocked read fails at once
          return;
        }
        wd_cv.wait_until(lock, st, std::min(due, Clock::now() + std::chrono::milliseconds(200)),
                         [&] { return deadline.load() < seen; });  // moved earlier
      }
    });
    ok = cli->send(req, resp, err);
  }  // joins the watchdog
  {
    std::lock_guard lock(mu_);
    active_.erase(cli.get());
  }

  bool shutting_down = false;
  {
    std::lock_guard lock(mu_);
    shutting_down = aborted_;
  }
  if (ok && !timed_out && !caller_gone) give_back(key, std::move(cli));
  if (head_relayed) {
    if (ok && !timed_out) {
      out.outcome = ForwardResult::Outcome::kCompleted;
    } else {
      out.outcome = ForwardResult::Outcome::kCut;
      if (caller_gone) {
        out.error = "the caller's stream could not be written";
      } else if (shutting_down) {
        out.error = "the privacy router is shutting down";
      } else if (timed_out) {
        out.idle_timeout = true;
        out.error = "the backend sent nothing for " + seconds_text(o_.idle_timeout) + " (--stream-idle-timeout)";
      } else {
        out.error = "the backend's connection broke mid-response (" + httplib::to_string(err) + ")";
      }
    }
    return out;
  }
  out.outcome = ForwardResult::Outcome::kFailed;
  if (server_error) {
    std::string why = excerpt(error_text, r.secret);
    out.error = "HTTP " + std::to_string(out.status) + (why.empty() ? "" : ": " + why);
  } else if (timed_out) {
    out.error = "no response head from " + r.url.origin() + " within " + seconds_text(o_.first_byte_timeout) +
                " (--first-byte-timeout)";
  } else if (ok) {
    out.error = "the backend answered without a response";
  } else {
    connect_failed = err == httplib::Error::Connection || err == httplib::Error::ConnectionTimeout;
    out.error = shutting_down ? "the privacy router is shutting down" : describe(err, r, ip, o_.connect_timeout);
  }
  return out;
}

}  // namespace bulwark::privacy_router
