#include "supervisor/proxy/egress_proxy.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <asio.hpp>
#include <atomic>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "shared/error.h"
#include "supervisor/proxy/address_check.h"
#include "supervisor/proxy/http_head.h"

namespace bulwark::proxy {
namespace {

using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr size_t kHeadReadChunk = 4096;
constexpr size_t kRelayChunk = 16 * 1024;
// After an error response, how long and how much to keep reading what the client still sends:
// closing a socket with unread input sends a reset, which can destroy the response before the
// client has read it.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytes = 256 * 1024;
constexpr auto kAcceptRetry = std::chrono::milliseconds(100);

const char* status_text(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 431: return "Request Header Fields Too Large";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
  }
}

std::string plain_response(int status, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + status_text(status) +
         "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

std::string deny_body(const std::string& target, const Decision& d) {
  std::string body = "bulwark: connection to " + target + " denied by policy";
  if (!d.rule.empty()) body += " rule \"" + d.rule + "\"";
  if (!d.reason.empty()) body += " (" + d.reason + ")";
  return body + "\n";
}

long long millis(std::chrono::milliseconds d) { return static_cast<long long>(d.count()); }

}  // namespace

class Connection;

struct EgressProxy::Impl {
  Impl(Options o, DecideFn d, OnDecisionFn r);
  void accept();
  void shutdown();

  // First member, so it is destroyed last: destroying it destroys pending handlers, and with them
  // the connections and sockets they own.
  asio::io_context io{1};
  Options opts;
  DecideFn decide;
  OnDecisionFn on_decision;
  tcp::acceptor acceptor{io};
  tcp::endpoint listen_endpoint;  // the bound address and port
  asio::steady_timer accept_retry{io};
  // Open connections, touched only on the event-loop thread. Weak: a connection lives as long as
  // its pending operations; this map is only for closing them all on stop().
  std::unordered_map<Connection*, std::weak_ptr<Connection>> conns;
  std::atomic<size_t> active{0};
  uint16_t port = 0;
  std::thread thread;
  std::atomic<bool> stopped{false};
};

// One client connection: read the request head, decide, resolve, check the addresses, connect,
// then relay both ways. Every step is an asynchronous operation on the one event loop; a pending
// operation's handler holds the connection alive.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(EgressProxy::Impl& proxy, tcp::socket client)
      : p_(proxy), client_(std::move(client)), upstream_(proxy.io), resolver_(proxy.io), timer_(proxy.io) {}

  void start(bool over_limit) {
    p_.conns[this] = weak_from_this();
    ++p_.active;
    asio::error_code ec;
    auto peer = client_.remote_endpoint(ec);
    if (ec) {
      spdlog::debug("egress proxy: client left before it could be served: {}", ec.message());
      close();
      return;
    }
    req_.client_addr = peer.address().to_string();
    req_.client_port = peer.port();
    if (over_limit) {
      spdlog::warn("egress proxy: refusing {}:{}: {} connections open, the limit", req_.client_addr,
                   req_.client_port, p_.opts.max_connections);
      respond(503, "bulwark: the egress proxy is at its limit of " + std::to_string(p_.opts.max_connections) +
                       " connections; retry later\n");
      return;
    }
    arm(Clock::now() + p_.opts.header_timeout);
    read_head();
  }

  // Idempotent; cancels whatever is pending (those handlers then see kClosed and return).
  void close() {
    if (phase_ == Phase::kClosed) return;
    phase_ = Phase::kClosed;
    asio::error_code ignored;  // a socket being dropped has nothing useful to say about closing
    client_.close(ignored);
    upstream_.close(ignored);
    resolver_.cancel();
    timer_.cancel();
    p_.conns.erase(this);
    --p_.active;
    if (!target_.empty())
      spdlog::debug("egress {} {} from {}:{} closed: {} bytes up, {} bytes down", req_.method, target_,
                    req_.client_addr, req_.client_port, up_.bytes, down_.bytes);
  }

 private:
  enum class Phase { kHead, kConnect, kRelay, kLinger, kClosed };

  // One direction of the relay.
  struct Pipe {
    tcp::socket* from = nullptr;
    tcp::socket* to = nullptr;
    std::vector<char> buf;
    std::string pending;  // written before the first read: the 200, a rewritten head, early bytes
    bool eof = false;
    uint64_t bytes = 0;
  };

  void arm(Clock::time_point at) {
    timer_.expires_at(at);
    timer_.async_wait([self = shared_from_this()](asio::error_code ec) {
      if (!ec) self->on_timer();
    });
  }

  void on_timer() {
    switch (phase_) {
      case Phase::kHead:
        spdlog::debug("egress proxy: {}:{} sent no complete request head within {} ms; closing", req_.client_addr,
                      req_.client_port, millis(p_.opts.header_timeout));
        close();
        return;
      case Phase::kConnect:
        report(decision_);
        respond(504, "bulwark: connecting to " + target_ + " timed out after " +
                         std::to_string(millis(p_.opts.connect_timeout)) + " ms\n");
        return;
      case Phase::kRelay: {
        auto idle_until = last_activity_ + p_.opts.idle_timeout;
        if (Clock::now() < idle_until) {
          arm(idle_until);
          return;
        }
        spdlog::debug("egress {} {} from {}:{}: idle for {} ms; closing", req_.method, target_, req_.client_addr,
                      req_.client_port, millis(p_.opts.idle_timeout));
        close();
        return;
      }
      case Phase::kLinger:
        close();
        return;
      case Phase::kClosed:
        return;
    }
  }

  // --- request head ---------------------------------------------------------------------------

  void read_head() {
    size_t old = head_buf_.size();
    head_buf_.resize(old + kHeadReadChunk);
    client_.async_read_some(asio::buffer(head_buf_.data() + old, kHeadReadChunk),
                            [self = shared_from_this(), old](asio::error_code ec, size_t n) {
                              self->on_head_read(ec, old, n);
                            });
  }

  void on_head_read(asio::error_code ec, size_t old, size_t n) {
    if (phase_ != Phase::kHead) return;
    head_buf_.resize(old + n);
    if (ec) {
      // The client went away before finishing its request: nobody to answer.
      if (ec != asio::error::eof)
        spdlog::debug("egress proxy: reading the request of {}:{}: {}", req_.client_addr, req_.client_port,
                      ec.message());
      close();
      return;
    }
    std::string_view buf(head_buf_);
    bool first_newline = !saw_newline_ && std::memchr(head_buf_.data() + old, '\n', n) != nullptr;
    saw_newline_ = saw_newline_ || first_newline;
    // Parse only when something can have changed (first bytes, first line done, blank line seen,
    // limit passed), so a client trickling bytes cannot make us re-parse 64 KiB each time.
    bool worth_parsing = old == 0 || first_newline || find_head_end(buf, old >= 3 ? old - 3 : 0) != buf.npos ||
                         buf.size() > kMaxHeadBytes;
    if (!worth_parsing) {
      read_head();
      return;
    }
    RequestParse r = parse_request_head(buf);
    switch (r.status) {
      case ParseStatus::kIncomplete:
        read_head();
        return;
      case ParseStatus::kTooLarge:
        respond(431, "bulwark: " + r.error + "\n");
        return;
      case ParseStatus::kBad:
        spdlog::info("egress proxy: bad request from {}:{}: {}", req_.client_addr, req_.client_port, r.error);
        respond(400, "bulwark: bad request: " + r.error + "\n");
        return;
      case ParseStatus::kComplete:
        break;
    }
    head_ = std::move(r.head);
    // Bytes after the head: a request body, or a TLS ClientHello sent without waiting for the 200.
    up_.pending = head_buf_.substr(head_.head_bytes);
    head_buf_ = std::string();
    decide();
  }

  // --- decision, resolution, address check, connect -----------------------------------------

  void decide() {
    req_.host = head_.host;
    req_.port = head_.port;
    req_.method = head_.method;
    req_.path = head_.path;
    target_ = format_authority(head_.host, head_.port);
    try {
      decision_ = p_.decide(req_);
    } catch (const std::exception& e) {
      spdlog::error("egress proxy: the decision function failed for {}: {}; denying", target_, e.what());
      decision_ = Decision{false, "bulwark:policy-error", std::string("the policy check failed: ") + e.what()};
    }
    if (!decision_.allow) {
      report(decision_);
      respond(403, deny_body(target_, decision_));
      return;
    }
    for (const auto& s : decision_.allowed_ips) {
      if (auto c = parse_cidr(s))
        allowed_.push_back(*c);
      else
        spdlog::warn("egress proxy: ignoring allowed_ips entry \"{}\" of rule {}: not an address or CIDR", s,
                     decision_.rule);
    }
    phase_ = Phase::kConnect;
    arm(Clock::now() + p_.opts.connect_timeout);
    asio::error_code not_literal;
    auto literal = asio::ip::make_address(head_.host, not_literal);
    if (!not_literal) {
      // An IP literal needs no lookup, nor a place in the resolver's one-thread queue.
      check_addresses({tcp::endpoint(literal, head_.port)});
      return;
    }
    // No address_configured flag: glibc ignores loopback for it, and the sandbox may have no
    // global IPv6; an unreachable address just fails over to the next one.
    resolver_.async_resolve(head_.host, std::to_string(head_.port), tcp::resolver::numeric_service,
                            [self = shared_from_this()](asio::error_code ec, tcp::resolver::results_type results) {
                              self->on_resolved(ec, results);
                            });
  }

  void on_resolved(asio::error_code ec, const tcp::resolver::results_type& results) {
    if (phase_ != Phase::kConnect) return;
    if (ec || results.empty()) {
      std::string why = ec ? ec.message() : "no addresses";
      spdlog::info("egress {} {} from {}:{}: cannot resolve {}: {}", req_.method, target_, req_.client_addr,
                   req_.client_port, head_.host, why);
      report(decision_);
      respond(502, "bulwark: cannot resolve " + head_.host + " (" + why + ")\n");
      return;
    }
    std::vector<tcp::endpoint> eps;
    for (const auto& entry : results) eps.push_back(entry.endpoint());
    check_addresses(eps);
  }

  // Checks every address and keeps only those that pass: a name with one public and one metadata
  // address must not reach the metadata service on failover. The addresses checked are the ones
  // dialled, so DNS cannot change them in between.
  void check_addresses(const std::vector<tcp::endpoint>& candidates) {
    std::optional<AddressBlock> first_block;
    for (const auto& ep : candidates) {
      auto block = address_block(ep.address(), decision_.allow_private, allowed_);
      if (!block && ep == p_.listen_endpoint)
        // Chaining through itself would only burn connections (and loop if asked to).
        block = AddressBlock{"bulwark:proxy-loop", format_authority(ep.address().to_string(), ep.port()) +
                                                       " is this egress proxy itself"};
      if (block) {
        if (!first_block) first_block = std::move(block);
        continue;
      }
      if (std::find(endpoints_.begin(), endpoints_.end(), ep) == endpoints_.end()) endpoints_.push_back(ep);
    }
    if (endpoints_.empty()) {
      asio::error_code not_literal;
      asio::ip::make_address(head_.host, not_literal);
      Decision d{false, first_block->rule, (not_literal ? head_.host + ": " : "") + first_block->reason};
      report(d);
      respond(403, deny_body(target_, d));
      return;
    }
    report(decision_);
    connect_next();
  }

  void connect_next() {
    if (next_endpoint_ == endpoints_.size()) {
      spdlog::info("egress {} {}: cannot connect: {}", req_.method, target_, connect_errors_);
      respond(502, "bulwark: cannot connect to " + target_ + ": " + connect_errors_ + "\n");
      return;
    }
    tcp::endpoint ep = endpoints_[next_endpoint_++];
    asio::error_code ignored;
    upstream_.close(ignored);  // a failed attempt leaves the socket open; start the next one afresh
    upstream_.async_connect(ep, [self = shared_from_this(), ep](asio::error_code ec) { self->on_connected(ec, ep); });
  }

  void on_connected(asio::error_code ec, const tcp::endpoint& ep) {
    if (phase_ != Phase::kConnect) return;
    if (ec) {
      if (!connect_errors_.empty()) connect_errors_ += "; ";
      connect_errors_ += format_authority(ep.address().to_string(), ep.port()) + ": " + ec.message();
      connect_next();
      return;
    }
    // Interactive traffic (a shell over SSH, small TLS records) must not wait on Nagle; failing to
    // set it only costs latency.
    asio::error_code ignored;
    client_.set_option(tcp::no_delay(true), ignored);
    upstream_.set_option(tcp::no_delay(true), ignored);
    spdlog::debug("egress {} {} from {}:{} connected to {}", req_.method, target_, req_.client_addr,
                  req_.client_port, format_authority(ep.address().to_string(), ep.port()));
    phase_ = Phase::kRelay;
    last_activity_ = Clock::now();
    arm(last_activity_ + p_.opts.idle_timeout);
    up_.from = &client_;
    up_.to = &upstream_;
    down_.from = &upstream_;
    down_.to = &client_;
    if (head_.form == TargetForm::kAuthority) {
      down_.pending = "HTTP/1.1 200 Connection established\r\n\r\n";
    } else {
      // This first cut sends one request per upstream connection, with "Connection: close"; the
      // client connection ends with it (the response says "Connection: close" too). Later bytes
      // from the client are relayed to the same upstream, which is the one the policy allowed.
      up_.pending = forward_request_head(head_) + up_.pending;
      rewriting_response_ = true;
    }
    head_.headers = {};  // not needed any more; a long-lived tunnel should not keep them
    flush_then_read(up_);
    flush_then_read(down_);
  }

  // --- relay ----------------------------------------------------------------------------------

  void flush_then_read(Pipe& pipe) {
    if (pipe.pending.empty()) {
      read_pipe(pipe);
      return;
    }
    if (&pipe == &down_) sent_to_client_ = true;
    asio::async_write(*pipe.to, asio::buffer(pipe.pending),
                      [self = shared_from_this(), &pipe](asio::error_code ec, size_t) { self->on_written(pipe, ec); });
  }

  void read_pipe(Pipe& pipe) {
    if (pipe.buf.empty()) pipe.buf.resize(kRelayChunk);
    pipe.from->async_read_some(asio::buffer(pipe.buf), [self = shared_from_this(), &pipe](asio::error_code ec,
                                                                                           size_t n) {
      self->on_read(pipe, ec, n);
    });
  }

  void on_read(Pipe& pipe, asio::error_code ec, size_t n) {
    if (phase_ != Phase::kRelay) return;
    if (ec == asio::error::eof) {
      on_eof(pipe);
      return;
    }
    if (ec) {
      spdlog::debug("egress {} {}: {} side failed: {}", req_.method, target_, &pipe == &up_ ? "client" : "upstream",
                    ec.message());
      close();
      return;
    }
    last_activity_ = Clock::now();
    pipe.bytes += n;
    if (&pipe == &down_ && rewriting_response_) {
      on_response_bytes(n);
      return;
    }
    if (&pipe == &down_) sent_to_client_ = true;
    asio::async_write(*pipe.to, asio::buffer(pipe.buf.data(), n),
                      [self = shared_from_this(), &pipe](asio::error_code ec, size_t) { self->on_written(pipe, ec); });
  }

  void on_written(Pipe& pipe, asio::error_code ec) {
    if (phase_ != Phase::kRelay) return;
    if (ec) {
      spdlog::debug("egress {} {}: writing to the {} failed: {}", req_.method, target_,
                    &pipe == &up_ ? "upstream" : "client", ec.message());
      close();
      return;
    }
    last_activity_ = Clock::now();
    if (!pipe.pending.empty()) pipe.pending = std::string();  // a rewritten head can be 64 KiB: free it
    read_pipe(pipe);
  }

  void on_eof(Pipe& pipe) {
    pipe.eof = true;
    if (&pipe == &down_ && rewriting_response_) {
      if (sent_to_client_) {
        close();
      } else {
        respond(502, "bulwark: " + target_ + " closed the connection without sending a complete response\n");
      }
      return;
    }
    // Pass the half-close on: a tunnelled protocol may still answer after its peer stopped sending.
    asio::error_code ignored;  // a peer already gone shows up on the next read or write
    pipe.to->shutdown(tcp::socket::shutdown_send, ignored);
    if (up_.eof && down_.eof) close();
  }

  // Forwarded requests: collect the upstream's response head, relay 1xx interim heads verbatim,
  // and rewrite the final one so the client knows the connection closes after it.
  void on_response_bytes(size_t n) {
    resp_buf_.append(down_.buf.data(), n);
    std::string out;
    for (;;) {
      ResponseParse r = parse_response_head(resp_buf_);
      if (r.status == ParseStatus::kIncomplete) break;
      if (r.status != ParseStatus::kComplete) {
        spdlog::info("egress {} {}: bad response from upstream: {}", req_.method, target_, r.error);
        if (sent_to_client_)
          close();
        else
          respond(502, "bulwark: " + target_ + " sent a malformed response: " + r.error + "\n");
        return;
      }
      int status = r.head.status;
      if (status >= 100 && status < 200 && status != 101) {
        out.append(resp_buf_, 0, r.head.head_bytes);
        resp_buf_.erase(0, r.head.head_bytes);
        continue;
      }
      out += client_response_head(r.head);
      out.append(resp_buf_, r.head.head_bytes);
      resp_buf_ = std::string();
      rewriting_response_ = false;
      break;
    }
    if (out.empty()) {
      read_pipe(down_);
      return;
    }
    down_.pending = std::move(out);
    flush_then_read(down_);
  }

  // --- answers of the proxy's own -------------------------------------------------------------

  void report(const Decision& d) {
    if (reported_) return;
    reported_ = true;
    if (!d.allow)
      spdlog::info("egress denied: {} {} from {}:{} by {} ({})", req_.method, target_, req_.client_addr,
                   req_.client_port, d.rule, d.reason);
    else
      spdlog::debug("egress allowed: {} {} from {}:{} by {}", req_.method, target_, req_.client_addr,
                    req_.client_port, d.rule);
    if (!p_.on_decision) return;
    try {
      p_.on_decision(req_, d);
    } catch (const std::exception& e) {
      spdlog::error("egress proxy: the decision callback failed for {}: {}", target_, e.what());
    }
  }

  // Sends a plain-text response, stops sending, lingers briefly reading what the client still
  // sends, then closes.
  void respond(int status, const std::string& body) {
    if (phase_ == Phase::kLinger || phase_ == Phase::kClosed) return;
    phase_ = Phase::kLinger;
    asio::error_code ignored;  // cancelling and closing: errors mean there was nothing to stop
    client_.cancel(ignored);   // a relay read may be pending on it; the drain below replaces it
    upstream_.close(ignored);
    resolver_.cancel();
    response_ = plain_response(status, body);
    arm(Clock::now() + kLingerTime);
    asio::async_write(client_, asio::buffer(response_), [self = shared_from_this()](asio::error_code ec, size_t) {
      if (self->phase_ != Phase::kLinger) return;
      if (ec) {
        spdlog::debug("egress proxy: sending an error response to {}:{}: {}", self->req_.client_addr,
                      self->req_.client_port, ec.message());
        self->close();
        return;
      }
      asio::error_code ignored;  // the drain's read sees a dead socket anyway
      self->client_.shutdown(tcp::socket::shutdown_send, ignored);
      self->drain();
    });
  }

  void drain() {
    drain_buf_.resize(kHeadReadChunk);
    client_.async_read_some(asio::buffer(drain_buf_), [self = shared_from_this()](asio::error_code ec, size_t n) {
      if (self->phase_ != Phase::kLinger) return;
      self->drained_ += n;
      if (ec || self->drained_ > kLingerBytes) {
        self->close();
        return;
      }
      self->drain();
    });
  }

  EgressProxy::Impl& p_;
  tcp::socket client_;
  tcp::socket upstream_;
  tcp::resolver resolver_;
  asio::steady_timer timer_;
  Phase phase_ = Phase::kHead;
  Clock::time_point last_activity_;

  std::string head_buf_;
  bool saw_newline_ = false;
  RequestHead head_;
  Request req_;
  std::string target_;  // "host:port", for messages
  Decision decision_;
  bool reported_ = false;
  std::vector<Cidr> allowed_;
  std::vector<tcp::endpoint> endpoints_;
  size_t next_endpoint_ = 0;
  std::string connect_errors_;

  Pipe up_;    // client -> upstream
  Pipe down_;  // upstream -> client
  bool rewriting_response_ = false;
  bool sent_to_client_ = false;
  std::string resp_buf_;

  std::string response_;
  std::vector<char> drain_buf_;
  size_t drained_ = 0;
};

EgressProxy::Impl::Impl(Options o, DecideFn d, OnDecisionFn r)
    : opts(std::move(o)), decide(std::move(d)), on_decision(std::move(r)) {
  if (!decide) throw Error(Code::kInvalidArgument, "the egress proxy needs a decision function");
  asio::error_code ec;
  auto addr = asio::ip::make_address(opts.listen_address, ec);
  if (ec)
    throw Error(Code::kInvalidArgument,
                "egress proxy listen address \"" + opts.listen_address + "\" is not an IP address", "listen_address");
  tcp::endpoint ep(addr, opts.listen_port);
  std::string where = format_authority(addr.to_string(), opts.listen_port);
  auto check = [&](const char* step) {
    if (ec) throw Error(Code::kUnavailable, "egress proxy cannot listen on " + where + ": " + step + ": " + ec.message());
  };
  acceptor.open(ep.protocol(), ec);
  check("socket");
  acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  check("SO_REUSEADDR");
  acceptor.bind(ep, ec);
  check("bind");
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  check("listen");
  listen_endpoint = acceptor.local_endpoint(ec);
  check("getsockname");
  port = listen_endpoint.port();
  accept();  // queued now, served once run_in_thread() runs the loop
}

void EgressProxy::Impl::accept() {
  acceptor.async_accept([this](asio::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (ec) {
      // Typically EMFILE (out of descriptors): pause instead of spinning on the same error.
      spdlog::warn("egress proxy: accept failed: {}; retrying in {} ms", ec.message(), kAcceptRetry.count());
      accept_retry.expires_after(kAcceptRetry);
      accept_retry.async_wait([this](asio::error_code e) {
        if (!e) accept();
      });
      return;
    }
    bool over_limit = active.load() >= opts.max_connections;
    std::make_shared<Connection>(*this, std::move(s))->start(over_limit);
    accept();
  });
}

void EgressProxy::Impl::shutdown() {
  asio::error_code ignored;  // shutting down: a listener that will not close cleanly is gone anyway
  acceptor.close(ignored);
  accept_retry.cancel();
  auto all = std::move(conns);
  conns.clear();
  for (auto& [ptr, weak] : all)
    if (auto c = weak.lock()) c->close();
  // Do not wait for the aborted handlers or a getaddrinfo in flight: ~io_context frees them.
  io.stop();
}

EgressProxy::EgressProxy(Options opts, DecideFn decide, OnDecisionFn on_decision)
    : impl_(std::make_unique<Impl>(std::move(opts), std::move(decide), std::move(on_decision))) {}

EgressProxy::~EgressProxy() { stop(); }

uint16_t EgressProxy::port() const { return impl_->port; }

size_t EgressProxy::active_connections() const { return impl_->active.load(); }

void EgressProxy::run_in_thread() {
  if (impl_->stopped) throw Error(Code::kFailedPrecondition, "the egress proxy was stopped; create a new one");
  if (impl_->thread.joinable()) throw Error(Code::kFailedPrecondition, "the egress proxy is already running");
  impl_->thread = std::thread([impl = impl_.get()] {
    for (;;) {
      try {
        impl->io.run();
        return;
      } catch (const std::exception& e) {
        // One connection's failure must not take egress down for the whole sandbox.
        spdlog::error("egress proxy: a handler failed: {}; the event loop carries on", e.what());
      }
    }
  });
}

void EgressProxy::stop() {
  if (impl_->thread.get_id() == std::this_thread::get_id())
    throw Error(Code::kFailedPrecondition, "EgressProxy::stop() called from the proxy's own thread (a callback)");
  if (impl_->stopped.exchange(true)) return;
  asio::post(impl_->io, [impl = impl_.get()] { impl->shutdown(); });
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace bulwark::proxy
