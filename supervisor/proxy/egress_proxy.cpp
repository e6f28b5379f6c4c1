#include "supervisor/proxy/egress_proxy.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <atomic>
#include <cctype>
#include <cstring>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>

#include "shared/error.h"
#include "shared/policy_engine.h"
#include "supervisor/proxy/address_check.h"
#include "supervisor/proxy/http_body.h"
#include "supervisor/proxy/http_head.h"
#include "supervisor/proxy/sandbox_ca.h"
#include "supervisor/proxy/transparent.h"

#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>

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
constexpr char kDefaultDeny[] = "bulwark:default-deny";
constexpr size_t kMaxNameCandidates = 16;  // lookups one nameless transparent connection may cost

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

std::string response(int status, const std::string& content_type, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + status_text(status) + "\r\nContent-Type: " + content_type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

std::string plain_response(int status, const std::string& body) {
  return response(status, "text/plain; charset=utf-8", body);
}

// The 403 the agent gets: machine-readable, and saying which policy (rule and version) denied.
std::string denied_response(const std::string& what, const std::string& rule, const std::string& reason,
                            uint64_t version) {
  std::string message = "bulwark: " + what + " denied by network policy version " + std::to_string(version);
  if (!reason.empty()) message += ": " + reason;
  nlohmann::json body = {
      {"error", {{"code", "policy_denied"}, {"message", message}, {"rule", rule}, {"policy_version", version}}}};
  // replace: a reason can quote client bytes; the body must stay valid JSON whatever they were.
  return response(403, "application/json",
                  body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

long long millis(std::chrono::milliseconds d) { return static_cast<long long>(d.count()); }

bool is_eof(const asio::error_code& ec) {
  // A TLS peer that closes without close_notify: for HTTP framed by length or chunks that is an
  // ordinary end; a body framed by the close itself is then possibly truncated, as with plain TCP.
  return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

// A client socket whose first bytes were already read (behind the CONNECT head, or while
// looking for a TLS ClientHello): they are handed out before the socket is read again. The next
// layer of the TLS stream that terminates an inspected tunnel.
class PrefixedSocket {
 public:
  using executor_type = tcp::socket::executor_type;
  using lowest_layer_type = tcp::socket::lowest_layer_type;

  PrefixedSocket(tcp::socket& s, std::string prefix) : s_(&s), prefix_(std::move(prefix)) {}
  executor_type get_executor() { return s_->get_executor(); }
  lowest_layer_type& lowest_layer() { return s_->lowest_layer(); }
  const lowest_layer_type& lowest_layer() const { return s_->lowest_layer(); }

  template <class Buffers, class Handler>
  void async_read_some(const Buffers& buffers, Handler&& handler) {
    if (prefix_.empty()) {
      s_->async_read_some(buffers, std::forward<Handler>(handler));
      return;
    }
    size_t n = asio::buffer_copy(buffers, asio::buffer(prefix_));
    prefix_.erase(0, n);
    asio::post(s_->get_executor(), [h = std::forward<Handler>(handler), n]() mutable { h(asio::error_code(), n); });
  }

  template <class Buffers, class Handler>
  void async_write_some(const Buffers& buffers, Handler&& handler) {
    s_->async_write_some(buffers, std::forward<Handler>(handler));
  }

 private:
  tcp::socket* s_;
  std::string prefix_;
};

using ClientTls = asio::ssl::stream<PrefixedSocket>;
using UpstreamTls = asio::ssl::stream<tcp::socket&>;

// One side of an HTTP exchange, plain or TLS, behind one interface.
using IoHandler = std::function<void(asio::error_code, size_t)>;
class ByteStream {
 public:
  virtual ~ByteStream() = default;
  virtual void read_some(asio::mutable_buffer b, IoHandler h) = 0;
  virtual void write_all(asio::const_buffer b, IoHandler h) = 0;
};

template <class S>
class StreamOf final : public ByteStream {
 public:
  explicit StreamOf(S& s) : s_(s) {}
  void read_some(asio::mutable_buffer b, IoHandler h) override { s_.async_read_some(b, std::move(h)); }
  void write_all(asio::const_buffer b, IoHandler h) override { asio::async_write(s_, b, std::move(h)); }

 private:
  S& s_;
};

struct Snapshot {
  std::shared_ptr<const policy::CompiledPolicy> policy;
  uint64_t version = 0;
  uint64_t generation = 0;  // bumped by every set_policy, whatever version the caller gave
};

// Lets inference sinks, held by other threads for as long as they like, post onto the event
// loop only while it exists: the proxy's destructor nulls io under the lock.
struct LoopGate {
  std::mutex mu;
  asio::io_context* io = nullptr;
};

// Where a redirected connection was going, as the supervisor namespace's conntrack recorded it
// before the nftables redirect rewrote it.
tcp::endpoint kernel_original_destination(int fd) {
  sockaddr_in6 a6{};
  socklen_t len = sizeof a6;
  if (::getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &a6, &len) == 0 && a6.sin6_family == AF_INET6) {
    asio::ip::address_v6::bytes_type b;
    std::memcpy(b.data(), &a6.sin6_addr, b.size());
    return tcp::endpoint(asio::ip::make_address_v6(b), ntohs(a6.sin6_port));
  }
  sockaddr_in a{};
  len = sizeof a;
  if (::getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &a, &len) != 0)
    throw Error(Code::kInternal, errno_text("getsockopt SO_ORIGINAL_DST", errno));
  return tcp::endpoint(asio::ip::address_v4(ntohl(a.sin_addr.s_addr)), ntohs(a.sin_port));
}

bool iequals_ascii(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

class Connection;

// The InferenceSink of one inference.local request: posts each call onto the event loop, tagged
// with the request's number, so a late answer to a cancelled call can never land on the next
// request of the same connection. Holds the connection weakly: a gone client is not kept alive.
class ProxySink final : public InferenceSink {
 public:
  ProxySink(std::shared_ptr<LoopGate> gate, std::weak_ptr<Connection> conn, uint64_t call)
      : gate_(std::move(gate)), conn_(std::move(conn)), call_(call) {}
  void head(int status, std::vector<HeaderField> headers) override;
  void chunk(std::string bytes) override;
  void end(std::string error) override;
  void on_cancel(std::function<void()> fn) override {
    {
      std::lock_guard lock(mu_);
      if (!cancelled_) {
        on_cancel_ = std::move(fn);
        return;
      }
    }
    fn();
  }
  bool cancelled() const override {
    std::lock_guard lock(mu_);
    return cancelled_;
  }
  // The proxy's side (its thread). cancel: the client is gone; the handler's callback runs once,
  // unless it ended the call already. finish: the response ended; the sink goes inert.
  void cancel() {
    std::function<void()> fn;
    {
      std::lock_guard lock(mu_);
      if (cancelled_) return;
      cancelled_ = true;
      if (!ended_) fn = std::move(on_cancel_);
      on_cancel_ = nullptr;
    }
    if (fn) fn();
  }
  void finish() {
    std::lock_guard lock(mu_);
    cancelled_ = true;  // inert, without running the handler's callback
    on_cancel_ = nullptr;
  }

 private:
  void post(std::function<void(Connection&, uint64_t)> f, bool last);

  std::shared_ptr<LoopGate> gate_;
  std::weak_ptr<Connection> conn_;
  const uint64_t call_;
  mutable std::mutex mu_;
  bool cancelled_ = false, ended_ = false;
  std::function<void()> on_cancel_;
};

struct EgressProxy::Impl {
  Impl(Options o, std::shared_ptr<const policy::CompiledPolicy> policy, uint64_t version, EventFn e);
  void accept(tcp::acceptor& a, bool transparent);
  void shutdown();
  std::shared_ptr<const Snapshot> current() const {
    std::lock_guard lock(policy_mu);
    return snapshot;
  }

  // First member, so it is destroyed last: destroying it destroys pending handlers, and with them
  // the connections and sockets they own.
  asio::io_context io{1};
  Options opts;
  EventFn on_event;
  std::unique_ptr<BinaryIdentifier> identifier;  // when opts.identify is not given
  IdentifyFn identify;
  std::shared_ptr<SSL_CTX> upstream_tls;  // verifying client context, when TLS is inspected
  mutable std::mutex policy_mu;
  std::shared_ptr<const Snapshot> snapshot;  // guarded by policy_mu
  std::atomic<uint64_t> generation{0};
  tcp::acceptor acceptor{io};
  tcp::endpoint listen_endpoint;  // the bound address and port
  tcp::acceptor tacceptor{io};    // transparent listener (Options::transparent)
  tcp::endpoint transparent_endpoint;
  asio::steady_timer accept_retry{io};
  // Open connections, touched only on the event-loop thread. Weak: a connection lives as long as
  // its pending operations; this map is for closing them all on stop() and policy sweeps.
  std::unordered_map<Connection*, std::weak_ptr<Connection>> conns;
  std::atomic<size_t> active{0};
  uint16_t port = 0;
  std::atomic<bool> stopped{false};
  std::thread thread;
  std::shared_ptr<LoopGate> gate = std::make_shared<LoopGate>();
  // Declared after everything its tasks touch, so it is joined (by its destructor) before they go.
  asio::thread_pool workers;
};

// One client connection: read the request head while identifying the caller, decide, resolve,
// check the addresses, connect; then either relay bytes blindly (a tunnel the policy does not
// inspect) or take part in HTTP, request by request. Every step is an asynchronous operation on
// the one event loop; a pending operation's handler holds the connection alive.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(EgressProxy::Impl& proxy, tcp::socket client, bool transparent)
      : p_(proxy),
        client_(std::move(client)),
        upstream_(proxy.io),
        resolver_(proxy.io),
        timer_(proxy.io),
        transparent_(transparent) {}
  ~Connection() {
    if (inf_sink_) inf_sink_->cancel();  // close() does it; this is for a loop torn down around us
  }

  void start(bool over_limit) {
    p_.conns[this] = weak_from_this();
    ++p_.active;
    asio::error_code ec, ec2;
    peer_ = client_.remote_endpoint(ec);
    local_ = client_.local_endpoint(ec2);
    if (ec || ec2) {
      spdlog::debug("egress proxy: client left before it could be served: {}", (ec ? ec : ec2).message());
      close();
      return;
    }
    client_addr_ = peer_.address().to_string();
    if (over_limit) {
      spdlog::warn("egress proxy: refusing {}:{}: {} connections open, the limit", client_addr_, peer_.port(),
                   p_.opts.max_connections);
      respond(plain_response(503, "bulwark: the egress proxy is at its limit of " +
                                      std::to_string(p_.opts.max_connections) + " connections; retry later\n"));
      return;
    }
    tcp::endpoint identify_remote = local_;
    if (transparent_) {
      try {
        original_ = p_.opts.original_destination ? p_.opts.original_destination(client_.native_handle())
                                                  : kernel_original_destination(client_.native_handle());
      } catch (const std::exception& e) {
        spdlog::warn("egress transparent: {}:{}: no original destination: {}; closing", client_addr_, peer_.port(),
                     e.what());
        close();
        return;
      }
      // The agent's socket is connected to the original destination, not to us.
      identify_remote = original_;
      arm(Clock::now() + p_.opts.transparent_sniff_timeout);
    } else {
      arm(Clock::now() + p_.opts.header_timeout);
    }
    // Who the caller is does not depend on what it asks: find out while its head arrives.
    asio::post(p_.workers, [self = shared_from_this(), identify_remote]() mutable {
      Caller c;
      try {
        c = self->p_.identify(self->peer_, identify_remote);
      } catch (const std::exception& e) {
        c.error = e.what();
      }
      auto& io = self->p_.io;
      asio::post(io, [self = std::move(self), c = std::move(c)]() mutable { self->on_identified(std::move(c)); });
    });
    if (transparent_)
      read_sniff();
    else
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
      spdlog::debug("egress {} {} from {}:{} closed: {} bytes up, {} bytes down", head_.method, target_, client_addr_,
                    peer_.port(), up_.bytes, down_.bytes);
    if (inf_sink_) {
      // The call in flight has nobody to answer any more: tell its handler to stop.
      auto sink = std::move(inf_sink_);
      sink->cancel();
    }
  }

  // --- inference.local: the sink's calls, on the event loop -----------------------------------

  void on_inf_head(uint64_t call, int status, std::vector<HeaderField> headers) {
    if (!inf_current(call)) return;
    if (inf_head_sent_ || status < 200 || status > 999) {
      on_inf_end(call, inf_head_sent_ ? "the handler sent a second response head"
                                      : "the handler sent an invalid status " + std::to_string(status));
      return;
    }
    inf_head_sent_ = true;
    inf_mode_ = inference_body_mode(inf_req_.method, inf_req_.version_minor, status);
    if (inf_mode_ == BodyMode::kClose) inf_close_ = true;
    inf_queue(inference_response_head(status, headers, inf_mode_, inf_close_));
  }

  void on_inf_chunk(uint64_t call, std::string data) {
    if (!inf_current(call)) return;
    if (!inf_head_sent_) {
      on_inf_end(call, "the handler sent body bytes before the response head");
      return;
    }
    if (data.empty() || inf_mode_ == BodyMode::kNone) return;
    inf_queue(inf_mode_ == BodyMode::kChunked ? chunk_frame(data) : std::move(data));
  }

  void on_inf_end(uint64_t call, std::string error) {
    if (!inf_current(call)) return;
    inf_sink_->finish();
    inf_sink_.reset();
    if (!inf_head_sent_) {
      if (error.empty()) error = "the call ended without a response";
      spdlog::info("inference.local: {} {} from {}: {}", inf_req_.method, inf_req_.path, caller_name(), error);
      std::string resp = inference_error_response(502, "bad_gateway", "bulwark: inference.local: " + error, inf_close_);
      if (iequals_ascii(inf_req_.method, "HEAD")) resp.resize(resp.find("\r\n\r\n") + 4);  // no body for HEAD
      inf_queue(resp);
      inf_complete_ = true;
    } else if (!error.empty()) {
      // The status is out already: the client can only be shown a body that does not end.
      spdlog::info("inference.local: {} {} from {}: the response was cut short: {}", inf_req_.method, inf_req_.path,
                   caller_name(), error);
      inf_abort_ = true;
    } else {
      if (inf_mode_ == BodyMode::kChunked) inf_queue(kLastChunk);
      inf_complete_ = true;
    }
    inf_flush();
  }

  // A new policy was set: a blind tunnel is judged again now (nothing else would ever look at
  // it); inspected connections judge their next request with the new policy anyway.
  void on_policy_changed() {
    if (phase_ != Phase::kTunnel) return;
    std::string rule, reason;
    if (refresh(&rule, &reason)) return;
    emit(false, false, "CONNECT", "", rule, "policy version " + std::to_string(version_) +
                                                " no longer allows this open tunnel: " + reason);
    close();
  }

 private:
  enum class Phase { kHead, kIdentify, kConnect, kTunnel, kSniff, kTls, kHttp, kInference, kLinger, kClosed };

  // One direction of a blind tunnel.
  struct Pipe {
    tcp::socket* from = nullptr;
    tcp::socket* to = nullptr;
    std::vector<char> buf;
    std::string pending;  // written before the first read: the 200, early bytes
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
        if (transparent_) {
          // A silent client (the server speaks first) or a start that never completes: stop the
          // read in flight (its buffer is head_buf_) and decide on what came.
          sniff_final_ = true;
          asio::error_code ignored;
          client_.cancel(ignored);
          return;
        }
        spdlog::debug("egress proxy: {}:{} sent no complete request head within {} ms; closing", client_addr_,
                      peer_.port(), millis(p_.opts.header_timeout));
        close();
        return;
      case Phase::kIdentify:
        caller_.error = "identifying the calling program took longer than " +
                        std::to_string(millis(p_.opts.header_timeout)) + " ms";
        identified_ = true;
        decide();
        return;
      case Phase::kConnect:
        emit_connect();
        respond(plain_response(504, "bulwark: connecting to " + target_ + " timed out after " +
                                        std::to_string(millis(p_.opts.connect_timeout)) + " ms\n"));
        return;
      case Phase::kSniff:
      case Phase::kTls:
        spdlog::info("egress CONNECT {} from {}:{}: no TLS handshake completed within {} ms; closing", target_,
                     client_addr_, peer_.port(), millis(p_.opts.header_timeout));
        close();
        return;
      case Phase::kInference:
        if (inf_sink_) {
          // A call in flight is bounded by its handler's own timeouts (a model may think for
          // minutes before its first byte), not by the connection's idleness.
          arm(Clock::now() + p_.opts.idle_timeout);
          return;
        }
        [[fallthrough]];
      case Phase::kTunnel:
      case Phase::kHttp: {
        auto idle_until = last_activity_ + p_.opts.idle_timeout;
        if (Clock::now() < idle_until) {
          arm(idle_until);
          return;
        }
        spdlog::debug("egress {} {} from {}:{}: idle for {} ms; closing", head_.method, target_, client_addr_,
                      peer_.port(), millis(p_.opts.idle_timeout));
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

  // --- request head and caller ----------------------------------------------------------------

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
        spdlog::debug("egress proxy: reading the request of {}:{}: {}", client_addr_, peer_.port(), ec.message());
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
        respond(plain_response(431, "bulwark: " + r.error + "\n"));
        return;
      case ParseStatus::kBad:
        spdlog::info("egress proxy: bad request from {}:{}: {}", client_addr_, peer_.port(), r.error);
        respond(plain_response(400, "bulwark: bad request: " + r.error + "\n"));
        return;
      case ParseStatus::kComplete:
        break;
    }
    head_ = std::move(r.head);
    // Bytes after the head: a request body, or a TLS ClientHello sent without waiting for the 200.
    early_ = head_buf_.substr(head_.head_bytes);
    head_buf_ = std::string();
    host_ = head_.host;
    port_ = head_.port;
    target_ = format_authority(host_, port_);
    inference_ = is_inference_host(host_);
    phase_ = Phase::kIdentify;
    if (identified_) decide();
  }

  // --- transparent: what the first bytes say -------------------------------------------------

  void read_sniff() {
    size_t old = head_buf_.size();
    size_t want = std::min(kHeadReadChunk, kMaxSniffBytes - old);
    head_buf_.resize(old + want);
    client_.async_read_some(asio::buffer(head_buf_.data() + old, want),
                            [self = shared_from_this(), old](asio::error_code ec, size_t n) {
                              if (self->phase_ != Phase::kHead) return;
                              self->head_buf_.resize(old + n);
                              // Half-closed after sending everything (or nothing: a connect to a
                              // denied address is still logged as a denial), or the timer stopped
                              // the read: decide on what came.
                              bool finished = ec == asio::error::eof ||
                                              (ec == asio::error::operation_aborted && self->sniff_final_);
                              if (ec && !finished) {
                                self->close();
                                return;
                              }
                              self->on_sniffed_transparent(finished || self->sniff_final_ ||
                                                           self->head_buf_.size() >= kMaxSniffBytes);
                            });
  }

  void on_sniffed_transparent(bool final) {
    if (phase_ != Phase::kHead) return;
    Sniff s = sniff_first_bytes(head_buf_, final);
    if (s.kind == SniffKind::kIncomplete) {
      // Bytes are coming: give the client the whole head timeout for the rest.
      if (!head_buf_.empty()) arm(Clock::now() + p_.opts.header_timeout);
      read_sniff();
      return;
    }
    sniff_kind_ = s.kind;
    if (!s.error.empty())
      spdlog::info("egress transparent from {}:{} to {}: {}; deciding on the address", client_addr_, peer_.port(),
                   format_authority(original_.address().to_string(), original_.port()), s.error);
    head_ = RequestHead();
    head_.method = "CONNECT";
    head_.form = TargetForm::kAuthority;
    early_ = std::move(head_buf_);
    head_buf_ = std::string();
    // inference.local resolves (in the sandbox's DNS) to the supervisor's own address, whose 80
    // and 443 are redirected here: nothing else can arrive with that destination.
    inference_ = original_.address() == p_.listen_endpoint.address() && (original_.port() == 80 || original_.port() == 443);
    named_ = !s.name.empty();
    host_ = inference_ ? std::string("inference.local") : named_ ? s.name : original_.address().to_string();
    port_ = original_.port();
    target_ = format_authority(host_, port_);
    phase_ = Phase::kIdentify;
    arm(Clock::now() + p_.opts.header_timeout);
    if (identified_) decide();
  }

  void on_identified(Caller c) {
    if (identified_ || phase_ == Phase::kClosed) return;  // a timeout already decided without it
    caller_ = std::move(c);
    identified_ = true;
    if (phase_ == Phase::kIdentify) decide();
  }

  // --- decision, resolution, address check, connect -----------------------------------------

  bool is_connect() const { return head_.form == TargetForm::kAuthority; }
  std::string first_path() const { return is_connect() ? std::string() : head_.path; }

  void decide() {
    auto snap = p_.current();
    generation_ = snap->generation;
    version_ = snap->version;
    if (inference_) {
      // Managed inference: no policy decision, no denial, nothing resolved or dialled. The
      // caller (identified or not) is only recorded.
      start_inference();
      return;
    }
    if (!caller_.error.empty()) {
      if (caller_.changed)
        deny("bulwark:binary-changed", caller_.error);
      else
        deny("bulwark:unidentified-caller", "cannot tell which program opened this connection: " + caller_.error);
      return;
    }
    try {
      conn_ = snap->policy->decide_connect(host_, port_, caller_.exe_chain);
      if (conn_.allow && conn_.inspect && is_connect() && !p_.opts.ca) {
        deny(std::string(conn_.rule),
             "the endpoint's requests are inspected, which needs TLS interception, and this proxy has no sandbox CA");
        return;
      }
      if (!conn_.allow && transparent_ && !named_ && !tried_names_ && p_.opts.names_for_address) {
        // No name came with the bytes (protocol: tcp, or a client without SNI): the sandbox's
        // DNS may have answered a name with this address. That answer was the supervisor's own
        // lookup, so the name needs no second one.
        auto names = p_.opts.names_for_address(original_.address());
        if (names.size() > kMaxNameCandidates) names.resize(kMaxNameCandidates);
        for (const auto& n : names) {
          auto d = snap->policy->decide_connect(n, port_, caller_.exe_chain);
          if (!d.allow) continue;
          conn_ = d;
          host_ = n;
          named_ = true;
          named_by_dns_ = true;
          target_ = format_authority(host_, port_);
          break;
        }
      }
      if (!conn_.allow && transparent_ && !named_ && !tried_names_) {
        // Else the address may still be one that a host the policy names on this port resolves to.
        tried_names_ = true;
        candidates_ = snap->policy->exact_hosts_on_port(port_);
        if (candidates_.size() > kMaxNameCandidates) candidates_.resize(kMaxNameCandidates);
        if (!candidates_.empty()) {
          try_candidate(0);
          return;
        }
      }
      if (!conn_.allow) {
        deny(std::string(conn_.rule), conn_.reason);
        return;
      }
      if (!is_connect() && conn_.inspect) {
        // A plain request is judged before anything is dialled.
        first_ = policy::decide_request(conn_, head_.method, head_.path);
        if (!first_.allow) {
          const std::string& judged = first_.path.empty() ? head_.path : first_.path;
          emit(false, false, head_.method, judged, first_.rule, first_.reason);
          respond(denied_response(head_.method + " " + target_ + judged, rule_name(first_.rule), first_.reason,
                                  version_));
          return;
        }
      }
    } catch (const std::exception& e) {
      spdlog::error("egress proxy: the policy check failed for {}: {}; denying", target_, e.what());
      deny("bulwark:policy-error", std::string("the policy check failed: ") + e.what());
      return;
    }
    allowed_ = cidrs(conn_);
    phase_ = Phase::kConnect;
    arm(Clock::now() + p_.opts.connect_timeout);
    if (transparent_) {
      if (!named_ || named_by_dns_) {
        check_addresses({original_});
        return;
      }
      // The name the client sent must lead where it was going: an allowed SNI on a connection to
      // another address (domain fronting, or a made-up SNI) is refused. The dial is always to the
      // original address, never to a fresh lookup of the name.
      resolver_.async_resolve(host_, std::to_string(port_), tcp::resolver::numeric_service,
                              [self = shared_from_this()](asio::error_code ec, tcp::resolver::results_type results) {
                                self->on_name_resolved(ec, results);
                              });
      return;
    }
    asio::error_code not_literal;
    auto literal = asio::ip::make_address(host_, not_literal);
    if (!not_literal) {
      // An IP literal needs no lookup, nor a place in the resolver's one-thread queue.
      check_addresses({tcp::endpoint(literal, port_)});
      return;
    }
    // No address_configured flag: glibc ignores loopback for it, and the sandbox may have no
    // global IPv6; an unreachable address just fails over to the next one.
    resolver_.async_resolve(host_, std::to_string(port_), tcp::resolver::numeric_service,
                            [self = shared_from_this()](asio::error_code ec, tcp::resolver::results_type results) {
                              self->on_resolved(ec, results);
                            });
  }

  static std::string rule_name(std::string_view rule) { return rule.empty() ? kDefaultDeny : std::string(rule); }

  std::vector<Cidr> cidrs(const policy::ConnectDecision& d) const {
    std::vector<Cidr> out;
    for (auto s : d.allowed_ips) {
      if (auto c = parse_cidr(s))
        out.push_back(*c);
      else
        spdlog::warn("egress proxy: ignoring allowed_ips entry \"{}\" of rule {}: not an address or CIDR", s, d.rule);
    }
    return out;
  }

  // Why `a` may not be dialled for decision d (with its allowed_ips parsed as `allowed`).
  std::optional<AddressBlock> block_for(const tcp::endpoint& ep, const policy::ConnectDecision& d,
                                        const std::vector<Cidr>& allowed) const {
    auto block = address_block(ep.address(), d.exact_host, allowed);
    if (!block && d.ips_only &&
        std::none_of(allowed.begin(), allowed.end(), [&](const Cidr& c) { return cidr_contains(c, ep.address()); }))
      block = AddressBlock{"bulwark:outside-allowed-ips",
                           ep.address().to_string() + " is not in the allowed_ips of " + std::string(d.rule)};
    if (!block && (ep == p_.listen_endpoint || (p_.opts.transparent && ep == p_.transparent_endpoint)))
      // Chaining through itself would only burn connections (and loop if asked to).
      block = AddressBlock{"bulwark:proxy-loop",
                           format_authority(ep.address().to_string(), ep.port()) + " is this egress proxy itself"};
    return block;
  }

  // Looks the policy's names for this port up one by one; the first that resolves to the
  // original address names the connection. None: decided on the address (denied).
  void try_candidate(size_t i) {
    if (i == candidates_.size()) {
      decide();
      return;
    }
    resolver_.async_resolve(candidates_[i], std::to_string(port_), tcp::resolver::numeric_service,
                            [self = shared_from_this(), i](asio::error_code ec, tcp::resolver::results_type results) {
                              if (self->phase_ != Phase::kIdentify) return;
                              std::vector<asio::ip::address> addrs;
                              if (!ec)
                                for (const auto& r : results) addrs.push_back(r.endpoint().address());
                              if (!name_leads_to(addrs, self->original_.address())) {
                                self->try_candidate(i + 1);
                                return;
                              }
                              self->host_ = self->candidates_[i];
                              self->named_ = true;
                              self->target_ = format_authority(self->host_, self->port_);
                              self->decide();
                            });
  }

  void on_name_resolved(asio::error_code ec, const tcp::resolver::results_type& results) {
    if (phase_ != Phase::kConnect) return;
    std::vector<asio::ip::address> addrs;
    if (!ec)
      for (const auto& r : results) addrs.push_back(r.endpoint().address());
    if (!name_leads_to(addrs, original_.address())) {
      std::string seen;
      for (const auto& a : addrs) seen += (seen.empty() ? "" : ", ") + a.to_string();
      deny("bulwark:name-mismatch",
           host_ + " (the connection's " + (sniff_kind_ == SniffKind::kTls ? "TLS SNI" : "HTTP Host") +
               ") does not resolve to its destination " + original_.address().to_string() +
               (ec ? " (lookup failed: " + ec.message() + ")" : " (it resolves to " + seen + ")"));
      return;
    }
    check_addresses({original_});
  }

  void on_resolved(asio::error_code ec, const tcp::resolver::results_type& results) {
    if (phase_ != Phase::kConnect) return;
    if (ec || results.empty()) {
      std::string why = ec ? ec.message() : "no addresses";
      spdlog::info("egress {} {} from {}:{}: cannot resolve {}: {}", head_.method, target_, client_addr_,
                   peer_.port(), host_, why);
      emit_connect();
      respond(plain_response(502, "bulwark: cannot resolve " + host_ + " (" + why + ")\n"));
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
      if (auto block = block_for(ep, conn_, allowed_)) {
        if (!first_block) first_block = std::move(block);
        continue;
      }
      if (std::find(endpoints_.begin(), endpoints_.end(), ep) == endpoints_.end()) endpoints_.push_back(ep);
    }
    if (endpoints_.empty()) {
      asio::error_code not_literal;
      asio::ip::make_address(host_, not_literal);
      deny(first_block->rule, (not_literal ? host_ + ": " : "") + first_block->reason);
      return;
    }
    emit_connect();
    connect_next();
  }

  void connect_next() {
    if (next_endpoint_ == endpoints_.size()) {
      spdlog::info("egress {} {}: cannot connect: {}", head_.method, target_, connect_errors_);
      respond(plain_response(502, "bulwark: cannot connect to " + target_ + ": " + connect_errors_ + "\n"));
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
    spdlog::debug("egress {} {} from {}:{} connected to {}", head_.method, target_, client_addr_, peer_.port(),
                  format_authority(ep.address().to_string(), ep.port()));
    last_activity_ = Clock::now();
    if (!is_connect()) {
      start_http(true);
      return;
    }
    if (!conn_.inspect) {
      phase_ = Phase::kTunnel;
      arm(last_activity_ + p_.opts.idle_timeout);
      up_.from = &client_;
      up_.to = &upstream_;
      down_.from = &upstream_;
      down_.to = &client_;
      up_.pending = std::move(early_);
      if (!transparent_) down_.pending = "HTTP/1.1 200 Connection established\r\n\r\n";
      head_.headers = {};  // a long-lived tunnel should not keep them
      flush_then_read(up_);
      flush_then_read(down_);
      return;
    }
    // Inspected: say yes, then see whether the client speaks TLS or plain HTTP in the tunnel.
    if (transparent_) {
      // Nothing to say yes to: the client thinks it is talking to the server already.
      if (early_.empty()) {
        close();  // a silent client of an inspected (HTTP) endpoint: nothing to judge
        return;
      }
      phase_ = Phase::kSniff;
      arm(last_activity_ + p_.opts.header_timeout);
      on_sniffed();
      return;
    }
    answer_connect();
  }

  void answer_connect() {
    phase_ = Phase::kSniff;
    arm(last_activity_ + p_.opts.header_timeout);
    final_ = "HTTP/1.1 200 Connection established\r\n\r\n";
    asio::async_write(client_, asio::buffer(final_), [self = shared_from_this()](asio::error_code ec, size_t) {
      if (self->phase_ != Phase::kSniff) return;
      self->final_.clear();
      if (ec) {
        self->close();
        return;
      }
      if (!self->early_.empty()) {
        self->on_sniffed();
        return;
      }
      self->early_.resize(kHeadReadChunk);
      self->client_.async_read_some(asio::buffer(self->early_), [self](asio::error_code ec, size_t n) {
        if (self->phase_ != Phase::kSniff) return;
        if (ec) {
          self->close();
          return;
        }
        self->early_.resize(n);
        self->on_sniffed();
      });
    });
  }

  // --- inspected tunnels: TLS termination ---------------------------------------------------

  void on_sniffed() {
    if (static_cast<unsigned char>(early_[0]) != 0x16) {  // not a TLS handshake record: HTTP in clear
      cs_ = std::make_unique<StreamOf<tcp::socket>>(client_);
      req_in_ = std::move(early_);
      if (inference_) {
        start_inference_http();
        return;
      }
      us_ = std::make_unique<StreamOf<tcp::socket>>(upstream_);
      start_http(false);
      return;
    }
    phase_ = Phase::kTls;
    tls_ = true;
    try {
      auto ctx = p_.opts.ca->server_ctx_for(host_);
      SSL* ssl = SSL_new(ctx.get());
      if (!ssl) throw Error(Code::kInternal, "SSL_new failed");
      // The stream owns the SSL, which holds its own reference to the context.
      client_tls_ = std::make_unique<ClientTls>(PrefixedSocket(client_, std::move(early_)), ssl);
    } catch (const std::exception& e) {
      spdlog::error("egress CONNECT {}: cannot set up TLS interception: {}", target_, e.what());
      close();
      return;
    }
    client_tls_->async_handshake(asio::ssl::stream_base::server,
                                 [self = shared_from_this()](asio::error_code ec) { self->on_client_handshake(ec); });
  }

  void on_client_handshake(asio::error_code ec) {
    if (phase_ != Phase::kTls) return;
    if (ec) {
      spdlog::info("egress CONNECT {} from {}:{}: the client's TLS handshake failed: {} (does it trust the sandbox CA? "
                   "SSL_CERT_FILE and friends point at it)",
                   target_, client_addr_, peer_.port(), ec.message());
      close();
      return;
    }
    cs_ = std::make_unique<StreamOf<ClientTls>>(*client_tls_);
    if (inference_) {
      start_inference_http();
      return;
    }
    try {
      SSL* ssl = SSL_new(p_.upstream_tls.get());
      if (!ssl) throw Error(Code::kInternal, "SSL_new failed");
      upstream_tls_ = std::make_unique<UpstreamTls>(upstream_, ssl);
      prepare_client_ssl(upstream_tls_->native_handle(), host_);
    } catch (const std::exception& e) {
      spdlog::error("egress CONNECT {}: cannot set up TLS to the upstream: {}", target_, e.what());
      close();
      return;
    }
    upstream_tls_->async_handshake(asio::ssl::stream_base::client,
                                   [self = shared_from_this()](asio::error_code ec) { self->on_upstream_handshake(ec); });
  }

  void on_upstream_handshake(asio::error_code ec) {
    if (phase_ != Phase::kTls) return;
    if (ec) {
      std::string why = ec.message();
      long verify = SSL_get_verify_result(upstream_tls_->native_handle());
      if (verify != X509_V_OK) why = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
      spdlog::info("egress CONNECT {} from {}:{}: TLS to the upstream failed: {}", target_, client_addr_, peer_.port(),
                   why);
      phase_ = Phase::kHttp;  // so the answer goes out through the client's TLS
      http_final(plain_response(502, "bulwark: TLS to " + target_ + " failed: " + why + "\n"));
      return;
    }
    us_ = std::make_unique<StreamOf<UpstreamTls>>(*upstream_tls_);
    start_http(false);
  }

  // --- HTTP, request by request ---------------------------------------------------------------

  // single: a plain absolute-form request (head_), the only one on this connection, sent with
  // "Connection: close" both ways. Otherwise an inspected tunnel: requests in origin-form, each
  // judged, keep-alive and pipelining as the client and upstream like.
  void start_http(bool single) {
    phase_ = Phase::kHttp;
    single_ = single;
    last_activity_ = Clock::now();
    arm(last_activity_ + p_.opts.idle_timeout);
    uint16_t default_port = tls_ ? 443 : 80;
    host_header_ = port_ == default_port ? (host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_) : target_;
    if (single) {
      cs_ = std::make_unique<StreamOf<tcp::socket>>(client_);
      us_ = std::make_unique<StreamOf<tcp::socket>>(upstream_);
      req_in_ = std::move(early_);
      std::string target = head_.path;
      if (conn_.inspect && !first_.path.empty()) target = first_.path + query_of(head_.path);
      if (!forward(head_, target)) return;
    }
    pump_requests();
    pump_responses();
  }

  static std::string query_of(std::string_view target) {
    size_t q = target.find('?');
    return q == std::string_view::npos ? std::string() : std::string(target.substr(q));
  }

  // Re-decides the connection when the policy changed since it was decided. False when the
  // policy no longer allows it; *rule and *reason then say why.
  bool refresh(std::string* rule, std::string* reason) {
    if (p_.generation.load() == generation_) return true;
    auto snap = p_.current();
    generation_ = snap->generation;
    version_ = snap->version;
    policy::ConnectDecision d;
    try {
      d = snap->policy->decide_connect(host_, port_, caller_.exe_chain);
    } catch (const std::exception& e) {
      *rule = "bulwark:policy-error";
      *reason = std::string("the policy check failed: ") + e.what();
      return false;
    }
    if (!d.allow) {
      *rule = rule_name(d.rule);
      *reason = d.reason;
      return false;
    }
    if (d.inspect && phase_ == Phase::kTunnel) {
      *rule = std::string(d.rule);
      *reason = "the endpoint is inspected now, which an open tunnel cannot be; reconnect";
      return false;
    }
    asio::error_code ec;
    auto remote = upstream_.remote_endpoint(ec);
    if (!ec) {
      if (auto block = block_for(remote, d, cidrs(d))) {
        *rule = block->rule;
        *reason = block->reason;
        return false;
      }
    }
    conn_ = std::move(d);
    return true;
  }

  // Judges one request of an inspected tunnel; sends it on when allowed.
  void handle_request(const RequestHead& h) {
    const std::string& path = h.path;  // origin-form: the target; absolute-form: its path and query
    if (h.form == TargetForm::kAbsolute && (h.host != host_ || h.port != port_)) {
      http_refuse(plain_response(400, "bulwark: this tunnel leads to " + target_ + "; a request for " +
                                          format_authority(h.host, h.port) + " cannot be sent through it\n"));
      return;
    }
    std::string rule, reason;
    if (!refresh(&rule, &reason)) {
      emit(false, false, h.method, path, rule, reason);
      http_refuse(denied_response(h.method + " " + target_ + path, rule, reason, version_));
      return;
    }
    policy::RequestDecision d;
    try {
      d = policy::decide_request(conn_, h.method, path);
    } catch (const std::exception& e) {
      d.allow = false;
      d.rule = "bulwark:policy-error";
      d.reason = std::string("the policy check failed: ") + e.what();
    }
    const std::string& judged = d.path.empty() ? path : d.path;
    emit(d.allow, d.audit, h.method, judged, d.rule, d.reason);
    if (!d.allow) {
      http_refuse(denied_response(h.method + " " + target_ + judged, rule_name(d.rule), d.reason, version_));
      return;
    }
    forward(h, d.path.empty() ? path : d.path + query_of(path));
  }

  // Sends an allowed request's head upstream and gets ready to pass its body. False when it
  // cannot be framed (the client has then been answered).
  bool forward(const RequestHead& h, const std::string& target) {
    std::string error;
    auto body = request_framing(h, &error);
    if (!body) {
      http_refuse(plain_response(400, "bulwark: bad request: " + error + "\n"));
      return false;
    }
    bool close = single_ || connection_has(h.headers, "close") ||
                 (h.version_minor == 0 && !connection_has(h.headers, "keep-alive"));
    methods_.push_back(h.method);
    req_body_ = *body;
    req_state_ = ReqState::kBody;
    after_body_ = close ? ReqState::kStopped : ReqState::kHead;
    write_up(upstream_request_head(h, target, host_header_, *body, close));
    return true;
  }

  void pump_requests() {
    while (phase_ == Phase::kHttp && !writing_up_) {
      if (req_state_ == ReqState::kStopped) return;
      if (req_state_ == ReqState::kHead) {
        if (req_in_.empty()) {
          read_client();
          return;
        }
        RequestParse r = parse_request_head(req_in_, kMaxHeadBytes, RequestContext::kOrigin);
        if (r.status == ParseStatus::kIncomplete) {
          read_client();
          return;
        }
        if (r.status == ParseStatus::kTooLarge) {
          http_refuse(plain_response(431, "bulwark: " + r.error + "\n"));
          return;
        }
        if (r.status == ParseStatus::kBad) {
          spdlog::info("egress {} from {}:{}: bad request in the tunnel: {}", target_, client_addr_, peer_.port(),
                       r.error);
          http_refuse(plain_response(400, "bulwark: bad request: " + r.error + "\n"));
          return;
        }
        req_in_.erase(0, r.head.head_bytes);
        handle_request(r.head);
        continue;  // forward() started a write, or the request was refused
      }
      // kBody
      std::string out;
      size_t n = req_body_.feed(req_in_, &out);
      if (req_body_.failed()) {
        spdlog::info("egress {} from {}:{}: request body cannot be framed: {}", target_, client_addr_, peer_.port(),
                     req_body_.error());
        close();  // part of the request may be upstream already: no answer can be trusted
        return;
      }
      req_in_.erase(0, n);
      if (req_body_.done()) req_state_ = after_body_;
      if (!out.empty()) {
        write_up(std::move(out));
        return;
      }
      if (!req_body_.done()) {
        read_client();
        return;
      }
    }
  }

  void read_client() {
    if (client_reading_ || client_eof_) return;
    client_reading_ = true;
    if (cbuf_.empty()) cbuf_.resize(kRelayChunk);
    cs_->read_some(asio::buffer(cbuf_), [self = shared_from_this()](asio::error_code ec, size_t n) {
      self->client_reading_ = false;
      if (self->phase_ == Phase::kLinger) {
        if (self->final_waiting_) self->continue_final();
        return;
      }
      if (self->phase_ == Phase::kInference) {
        self->inf_on_read(ec, n);
        return;
      }
      if (self->phase_ != Phase::kHttp) return;
      if (is_eof(ec)) {
        self->on_client_eof();
        return;
      }
      if (ec) {
        spdlog::debug("egress {}: client side failed: {}", self->target_, ec.message());
        self->close();
        return;
      }
      self->last_activity_ = Clock::now();
      self->up_.bytes += n;
      self->req_in_.append(self->cbuf_.data(), n);
      self->pump_requests();
    });
  }

  void on_client_eof() {
    client_eof_ = true;
    if (req_state_ == ReqState::kBody || !req_in_.empty()) {
      close();  // the client stopped in the middle of a request
      return;
    }
    if (methods_.empty() && !writing_down_) http_final("");
  }

  void write_up(std::string data) {
    writing_up_ = true;
    up_out_ = std::move(data);
    us_->write_all(asio::buffer(up_out_), [self = shared_from_this()](asio::error_code ec, size_t) {
      self->writing_up_ = false;
      if (self->phase_ != Phase::kHttp) return;
      if (ec) {
        spdlog::debug("egress {}: writing upstream failed: {}", self->target_, ec.message());
        self->close();
        return;
      }
      self->last_activity_ = Clock::now();
      self->up_out_.clear();
      self->pump_requests();
    });
  }

  void pump_responses() {
    while (phase_ == Phase::kHttp && !writing_down_) {
      if (response_done_) {
        response_done_ = false;
        if (!on_response_complete()) return;
        continue;
      }
      if (resp_state_ == RespState::kHead) {
        if (resp_in_.empty()) {
          if (upstream_eof_) {
            on_upstream_closed();
            return;
          }
          read_upstream();
          return;
        }
        ResponseParse r = parse_response_head(resp_in_);
        if (r.status == ParseStatus::kIncomplete && !upstream_eof_) {
          read_upstream();
          return;
        }
        if (r.status != ParseStatus::kComplete || methods_.empty() || r.head.status == 101) {
          std::string why = r.status == ParseStatus::kIncomplete ? "closed in the middle of a response head"
                            : r.status != ParseStatus::kComplete ? r.error
                            : methods_.empty()                   ? "sent a response to no request"
                                                                 : "switched protocols, which was not asked for";
          spdlog::info("egress {}: bad response from upstream: {}", target_, why);
          if (sent_response_bytes_ || methods_.empty())
            close();
          else
            http_final(plain_response(502, "bulwark: " + target_ + " sent a malformed response: " + why + "\n"));
          return;
        }
        if (r.head.status / 100 == 1) {  // interim: relayed as is, the final one follows
          std::string out = resp_in_.substr(0, r.head.head_bytes);
          resp_in_.erase(0, r.head.head_bytes);
          write_down(std::move(out));
          return;
        }
        std::string error;
        auto body = response_framing(r.head, methods_.front(), &error);
        if (!body) {
          spdlog::info("egress {}: bad response from upstream: {}", target_, error);
          if (sent_response_bytes_)
            close();
          else
            http_final(plain_response(502, "bulwark: " + target_ + " sent a malformed response: " + error + "\n"));
          return;
        }
        resp_body_ = *body;
        resp_close_ = single_ || body->kind() == BodyFramer::Kind::kUntilClose ||
                      connection_has(r.head.headers, "close") ||
                      (r.head.version_minor == 0 && !connection_has(r.head.headers, "keep-alive"));
        std::string out = single_ ? client_response_head(r.head) : resp_in_.substr(0, r.head.head_bytes);
        resp_in_.erase(0, r.head.head_bytes);
        resp_state_ = RespState::kBody;
        if (resp_body_.done()) response_done_ = true;
        write_down(std::move(out));
        return;
      }
      // kBody
      std::string out;
      size_t n = resp_body_.feed(resp_in_, &out);
      if (resp_body_.failed()) {
        spdlog::info("egress {}: response body cannot be framed: {}", target_, resp_body_.error());
        close();
        return;
      }
      resp_in_.erase(0, n);
      if (resp_body_.done()) response_done_ = true;
      if (!out.empty()) {
        write_down(std::move(out));
        return;
      }
      if (response_done_) continue;
      if (upstream_eof_) {
        if (resp_body_.kind() == BodyFramer::Kind::kUntilClose) {
          response_done_ = true;
          continue;
        }
        spdlog::info("egress {}: the upstream closed in the middle of a response", target_);
        close();
        return;
      }
      read_upstream();
      return;
    }
  }

  // A response went out whole. False when the connection is finishing.
  bool on_response_complete() {
    methods_.pop_front();
    resp_state_ = RespState::kHead;
    sent_response_bytes_ = false;
    if (methods_.empty() && !deny_.empty()) {
      http_final(std::move(deny_));
      return false;
    }
    if (resp_close_ || (methods_.empty() && (client_eof_ || req_state_ == ReqState::kStopped))) {
      http_final("");
      return false;
    }
    return true;
  }

  void on_upstream_closed() {
    if (!methods_.empty()) {
      if (sent_response_bytes_) {
        close();
        return;
      }
      http_final(plain_response(502, "bulwark: " + target_ + " closed the connection without sending a complete response\n"));
      return;
    }
    // An idle keep-alive connection the upstream ended: end the client's too (it reconnects).
    if (!deny_.empty()) {
      http_final(std::move(deny_));
      return;
    }
    http_final("");
  }

  void read_upstream() {
    if (upstream_reading_ || upstream_eof_) return;
    upstream_reading_ = true;
    if (ubuf_.empty()) ubuf_.resize(kRelayChunk);
    us_->read_some(asio::buffer(ubuf_), [self = shared_from_this()](asio::error_code ec, size_t n) {
      self->upstream_reading_ = false;
      if (self->phase_ != Phase::kHttp) return;
      if (is_eof(ec)) {
        self->upstream_eof_ = true;
      } else if (ec) {
        spdlog::debug("egress {}: upstream side failed: {}", self->target_, ec.message());
        self->close();
        return;
      } else {
        self->last_activity_ = Clock::now();
        self->down_.bytes += n;
        self->resp_in_.append(self->ubuf_.data(), n);
      }
      self->pump_responses();
    });
  }

  void write_down(std::string data) {
    writing_down_ = true;
    sent_response_bytes_ = true;
    down_out_ = std::move(data);
    cs_->write_all(asio::buffer(down_out_), [self = shared_from_this()](asio::error_code ec, size_t) {
      self->writing_down_ = false;
      if (self->phase_ != Phase::kHttp) return;
      if (ec) {
        spdlog::debug("egress {}: writing to the client failed: {}", self->target_, ec.message());
        self->close();
        return;
      }
      self->last_activity_ = Clock::now();
      self->down_out_.clear();
      self->pump_responses();
    });
  }

  // Refuses the current request: no more requests are read or sent on; once the upstream has
  // answered those already sent, the client gets `resp` and the connection closes.
  void http_refuse(std::string resp) {
    req_state_ = ReqState::kStopped;
    if (methods_.empty() && !writing_down_) {
      http_final(std::move(resp));
      return;
    }
    deny_ = std::move(resp);
  }

  // Ends the connection: `resp` (may be empty) to the client, then a graceful close. Called
  // only when no write to the client is pending.
  void http_final(std::string resp) {
    if (phase_ == Phase::kLinger || phase_ == Phase::kClosed) return;
    phase_ = Phase::kLinger;
    arm(Clock::now() + kLingerTime);
    asio::error_code ignored;  // cancelling and closing: errors mean there was nothing to stop
    upstream_.close(ignored);
    final_ = std::move(resp);
    if (client_reading_) {
      // A TLS stream cannot write its close_notify while a read is in flight: wait for it to end.
      final_waiting_ = true;
      client_.cancel(ignored);
      return;
    }
    continue_final();
  }

  void continue_final() {
    final_waiting_ = false;
    auto after = [self = shared_from_this()](asio::error_code ec, size_t) {
      if (self->phase_ != Phase::kLinger) return;
      if (ec) {
        self->close();
        return;
      }
      if (self->tls_) {
        self->client_tls_->async_shutdown([self](asio::error_code) { self->close(); });
        return;
      }
      asio::error_code ignored;  // the drain's read sees a dead socket anyway
      self->client_.shutdown(tcp::socket::shutdown_send, ignored);
      self->drain();
    };
    if (final_.empty()) {
      after(asio::error_code(), 0);
      return;
    }
    cs_->write_all(asio::buffer(final_), after);
  }

  // --- inference.local: requests ------------------------------------------------------------

  // Served here, before and without the policy; never resolved or dialled.
  void start_inference() {
    last_activity_ = Clock::now();
    // Streamed events are small writes: without this each waits for the previous one's ACK.
    asio::error_code ignored;
    client_.set_option(tcp::no_delay(true), ignored);
    if (!is_connect()) {
      // A plain absolute-form request: the only one on this connection, like other plain ones.
      cs_ = std::make_unique<StreamOf<tcp::socket>>(client_);
      req_in_ = std::move(early_);
      single_ = true;
      phase_ = Phase::kInference;
      arm(last_activity_ + p_.opts.idle_timeout);
      inf_begin(head_);
      inf_pump();
      return;
    }
    if (!p_.opts.ca) {
      respond(inference_error_response(
          503, "unavailable", "bulwark: inference.local needs TLS interception, and this proxy has no sandbox CA", true));
      return;
    }
    if (transparent_) {
      // Redirected to the supervisor's 80/443: the client already speaks TLS or HTTP to it.
      if (early_.empty()) {
        close();
        return;
      }
      phase_ = Phase::kSniff;
      arm(last_activity_ + p_.opts.header_timeout);
      on_sniffed();
      return;
    }
    answer_connect();  // then TLS with a leaf for inference.local, or plain HTTP in the tunnel
  }

  void start_inference_http() {
    phase_ = Phase::kInference;
    last_activity_ = Clock::now();
    arm(last_activity_ + p_.opts.idle_timeout);
    inf_pump();
  }

  std::string caller_name() const {
    return caller_.exe_chain.empty() ? "an unidentified program" : caller_.exe_chain.front();
  }

  bool inf_current(uint64_t call) const { return phase_ == Phase::kInference && inf_sink_ && call == inf_call_; }

  void inf_pump() {
    const size_t limit = p_.opts.inference_max_request_bytes;
    while (phase_ == Phase::kInference) {
      if (inf_state_ == InfState::kHead) {
        if (req_in_.empty()) {
          read_client();
          return;
        }
        RequestParse r = parse_request_head(req_in_, kMaxHeadBytes, RequestContext::kOrigin);
        if (r.status == ParseStatus::kIncomplete) {
          read_client();
          return;
        }
        if (r.status == ParseStatus::kTooLarge) {
          inf_refuse(431, "request_header_fields_too_large", "bulwark: " + r.error);
          return;
        }
        if (r.status == ParseStatus::kBad) {
          spdlog::info("inference.local from {}:{}: bad request: {}", client_addr_, peer_.port(), r.error);
          inf_refuse(400, "bad_request", "bulwark: bad request: " + r.error);
          return;
        }
        req_in_.erase(0, r.head.head_bytes);
        inf_begin(r.head);
        continue;
      }
      if (inf_state_ == InfState::kBody) {
        std::string out;
        size_t n = req_body_.feed(req_in_, &out);
        if (req_body_.failed()) {
          inf_refuse(400, "bad_request", "bulwark: the request body cannot be framed: " + req_body_.error());
          return;
        }
        req_in_.erase(0, n);
        inf_body_ += out;
        if (inf_body_.size() > limit) {
          inf_too_large();
          return;
        }
        if (req_body_.done()) {
          inf_call();
          continue;
        }
        read_client();
        return;
      }
      // A call in flight: keep reading, so a client that leaves cancels it (what it pipelines
      // meanwhile waits, up to one more request's worth).
      if (inf_state_ == InfState::kCalling && req_in_.size() <= kMaxHeadBytes + limit) read_client();
      return;
    }
  }

  // A request head: checks it and gets ready for its body.
  void inf_begin(const RequestHead& h) {
    if (h.form == TargetForm::kAbsolute && !is_inference_host(h.host)) {
      inf_refuse(400, "bad_request",
                 "bulwark: this connection leads to inference.local; a request for " +
                     format_authority(h.host, h.port) + " cannot be sent through it");
      return;
    }
    std::string error;
    auto body = request_framing(h, &error);
    if (!body) {
      inf_refuse(400, "bad_request", "bulwark: bad request: " + error);
      return;
    }
    inf_req_ = h;
    inf_body_.clear();
    inf_close_ = single_ || h.version_minor == 0 || connection_has(h.headers, "close");
    // Refused before reading a byte of it when the length says it will not fit.
    if (body->kind() == BodyFramer::Kind::kLength && body->declared_length() > p_.opts.inference_max_request_bytes) {
      inf_too_large();
      return;
    }
    req_body_ = body->kind() == BodyFramer::Kind::kChunked ? BodyFramer::chunked_decoded() : *body;
    inf_state_ = InfState::kBody;
    const std::string* expect = h.header("expect");
    if (expect && iequals_ascii(*expect, "100-continue") && !req_body_.done())
      inf_queue("HTTP/1.1 100 Continue\r\n\r\n");
  }

  void inf_too_large() {
    const size_t limit = p_.opts.inference_max_request_bytes;
    spdlog::info("inference.local: {} {} from {}: request over the limit of {} bytes", inf_req_.method, inf_req_.path,
                 caller_name(), limit);
    inf_refuse(413, "payload_too_large",
               "bulwark: the request to inference.local is too large: limit " + std::to_string(limit) + " bytes");
  }

  // Answers the current request with an error and ends the connection after it.
  void inf_refuse(int status, std::string_view code, const std::string& message) {
    inf_state_ = InfState::kStopped;
    inf_close_ = true;
    inf_complete_ = true;
    inf_queue(inference_error_response(status, code, message, true));
  }

  // The whole request is in: hand it to the handler.
  void inf_call() {
    inf_state_ = InfState::kCalling;
    InferenceRequest r;
    r.method = inf_req_.method;
    r.path = inf_req_.path;
    r.headers = inference_request_headers(inf_req_.headers);
    r.body = std::exchange(inf_body_, {});
    if (!caller_.exe_chain.empty()) r.binary = caller_.exe_chain.front();
    r.pid = caller_.pid;
    r.client_addr = client_addr_;
    r.client_port = peer_.port();
    emit(true, false, r.method, r.path, kInferenceRule,
         "inference.local: managed inference, answered by the privacy router; no network policy applies");
    inf_head_sent_ = false;
    inf_sink_ = std::make_shared<ProxySink>(p_.gate, weak_from_this(), ++inf_call_);
    std::shared_ptr<InferenceSink> sink = inf_sink_;
    if (!p_.opts.inference) {
      sink->head(503, {{"Content-Type", "application/json"}});
      sink->chunk(inference_error_body("unavailable", "bulwark: inference.local is not available: " +
                                                          p_.opts.inference_unavailable_reason));
      sink->end("");
      return;
    }
    try {
      p_.opts.inference(std::move(r), sink);
    } catch (const std::exception& e) {
      spdlog::error("inference.local: the handler failed: {}", e.what());
      sink->end(std::string("the inference handler failed: ") + e.what());
    }
  }

  void inf_on_read(asio::error_code ec, size_t n) {
    if (is_eof(ec)) {
      client_eof_ = true;
      if (inf_state_ == InfState::kHead && req_in_.empty() && !writing_down_ && inf_out_.empty()) {
        http_final("");  // between requests: an ordinary goodbye
        return;
      }
      // Mid-request or mid-response: the client is taken as gone (a half-close included), and
      // close() cancels the call in flight.
      spdlog::debug("inference.local from {}:{}: the client closed during a call", client_addr_, peer_.port());
      close();
      return;
    }
    if (ec) {
      spdlog::debug("inference.local from {}:{}: client side failed: {}", client_addr_, peer_.port(), ec.message());
      close();
      return;
    }
    last_activity_ = Clock::now();
    up_.bytes += n;
    req_in_.append(cbuf_.data(), n);
    inf_pump();
  }

  // Response bytes for the client: written at once, or after the write in progress.
  void inf_queue(std::string_view bytes) {
    inf_out_.append(bytes);
    size_t waiting = inf_out_.size() + (writing_down_ ? down_out_.size() : 0);
    if (waiting > p_.opts.inference_max_buffered_bytes) {
      spdlog::warn("inference.local: {} {} from {}: the client reads too slowly ({} bytes waiting, limit {}); "
                   "cutting the call",
                   inf_req_.method, inf_req_.path, caller_name(), waiting, p_.opts.inference_max_buffered_bytes);
      close();
      return;
    }
    inf_flush();
  }

  void inf_flush() {
    if (phase_ != Phase::kInference || writing_down_) return;
    if (inf_out_.empty()) {
      inf_flushed();
      return;
    }
    down_out_ = std::exchange(inf_out_, {});
    writing_down_ = true;
    cs_->write_all(asio::buffer(down_out_), [self = shared_from_this()](asio::error_code ec, size_t n) {
      self->writing_down_ = false;
      if (self->phase_ != Phase::kInference) return;
      if (ec) {
        spdlog::debug("inference.local from {}:{}: writing to the client failed: {}", self->client_addr_,
                      self->peer_.port(), ec.message());
        self->close();
        return;
      }
      self->last_activity_ = Clock::now();
      self->down_.bytes += n;
      self->down_out_.clear();
      self->inf_flush();
    });
  }

  // Everything queued has been written.
  void inf_flushed() {
    if (inf_abort_) {
      close();  // without the last chunk: the client sees the body end early
      return;
    }
    if (!inf_complete_) return;
    inf_complete_ = false;
    if (inf_close_) {
      inf_state_ = InfState::kStopped;
      http_final("");
      return;
    }
    inf_state_ = InfState::kHead;
    inf_pump();
  }

  // --- blind tunnel ---------------------------------------------------------------------------

  void flush_then_read(Pipe& pipe) {
    if (pipe.pending.empty()) {
      read_pipe(pipe);
      return;
    }
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
    if (phase_ != Phase::kTunnel) return;
    if (ec == asio::error::eof) {
      on_eof(pipe);
      return;
    }
    if (ec) {
      spdlog::debug("egress CONNECT {}: {} side failed: {}", target_, &pipe == &up_ ? "client" : "upstream",
                    ec.message());
      close();
      return;
    }
    last_activity_ = Clock::now();
    pipe.bytes += n;
    asio::async_write(*pipe.to, asio::buffer(pipe.buf.data(), n),
                      [self = shared_from_this(), &pipe](asio::error_code ec, size_t) { self->on_written(pipe, ec); });
  }

  void on_written(Pipe& pipe, asio::error_code ec) {
    if (phase_ != Phase::kTunnel) return;
    if (ec) {
      spdlog::debug("egress CONNECT {}: writing to the {} failed: {}", target_, &pipe == &up_ ? "upstream" : "client",
                    ec.message());
      close();
      return;
    }
    last_activity_ = Clock::now();
    if (!pipe.pending.empty()) pipe.pending = std::string();
    read_pipe(pipe);
  }

  void on_eof(Pipe& pipe) {
    pipe.eof = true;
    // Pass the half-close on: a tunnelled protocol may still answer after its peer stopped sending.
    asio::error_code ignored;  // a peer already gone shows up on the next read or write
    pipe.to->shutdown(tcp::socket::shutdown_send, ignored);
    if (up_.eof && down_.eof) close();
  }

  // --- events and answers of the proxy's own --------------------------------------------------

  void emit(bool allowed, bool audit, const std::string& method, const std::string& path, std::string_view rule,
            const std::string& reason) {
    Event e;
    e.allowed = allowed;
    e.audit = audit;
    if (!caller_.exe_chain.empty()) e.binary = caller_.exe_chain.front();
    e.pid = caller_.pid;
    e.host = host_;
    e.port = port_;
    e.method = method;
    e.path = path;
    e.rule = allowed ? std::string(rule) : rule_name(rule);
    e.reason = reason;
    e.policy_version = version_;
    e.client_addr = client_addr_;
    e.client_port = peer_.port();
    e.transparent = transparent_;
    if (!allowed)
      spdlog::info("egress denied: {} {}{} by {} from {} (pid {}), policy version {}: {}", method, target_, path, e.rule,
                   e.binary.empty() ? "an unidentified program" : e.binary, e.pid, e.policy_version, reason);
    else if (audit)
      spdlog::info("egress audit: {} {}{} allowed by enforcement: audit, from {} (pid {}), policy version {}: {}",
                   method, target_, path, e.binary, e.pid, e.policy_version, reason);
    else
      spdlog::debug("egress allowed: {} {}{} by {} from {}", method, target_, path, e.rule, e.binary);
    if (!p_.on_event) return;
    try {
      p_.on_event(e);
    } catch (const std::exception& ex) {
      spdlog::error("egress proxy: the event callback failed for {}: {}", target_, ex.what());
    }
  }

  // The connection's allowed outcome, once its addresses passed: a plain request judged by L7
  // reports that judgement; anything else the connection decision.
  void emit_connect() {
    if (connect_reported_) return;
    connect_reported_ = true;
    if (!is_connect() && conn_.inspect) {
      // One event for a plain request: an audit at either level shows, with the reason for it.
      const bool l4_audit = conn_.audit && !first_.audit;
      emit(first_.allow, first_.audit || conn_.audit, head_.method, first_.path.empty() ? head_.path : first_.path,
           l4_audit ? conn_.rule : first_.rule, l4_audit ? conn_.reason : first_.reason);
    } else {
      emit(true, conn_.audit, head_.method, first_path(), conn_.rule, conn_.reason);
    }
  }

  // Denies the connection as a whole: event, then 403.
  void deny(std::string rule, const std::string& reason) {
    rule = rule_name(rule);
    emit(false, false, head_.method, first_path(), rule, reason);
    respond(denied_response(head_.method + " " + target_ + first_path(), rule, reason, version_));
  }

  // Sends a response on the plain client socket, stops sending, lingers briefly reading what the
  // client still sends, then closes.
  void respond(std::string resp) {
    if (phase_ == Phase::kLinger || phase_ == Phase::kClosed) return;
    if (transparent_ && sniff_kind_ != SniffKind::kHttp) {
      // TLS or another protocol: an HTTP answer would only be garbage to it. A reset says no.
      asio::error_code ignored;
      client_.set_option(asio::socket_base::linger(true, 0), ignored);
      close();
      return;
    }
    phase_ = Phase::kLinger;
    asio::error_code ignored;  // cancelling and closing: errors mean there was nothing to stop
    client_.cancel(ignored);   // a read may be pending on it; the drain below replaces it
    upstream_.close(ignored);
    resolver_.cancel();
    final_ = std::move(resp);
    arm(Clock::now() + kLingerTime);
    asio::async_write(client_, asio::buffer(final_), [self = shared_from_this()](asio::error_code ec, size_t) {
      if (self->phase_ != Phase::kLinger) return;
      if (ec) {
        spdlog::debug("egress proxy: sending an error response to {}:{}: {}", self->client_addr_, self->peer_.port(),
                      ec.message());
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

  enum class ReqState { kHead, kBody, kStopped };
  enum class RespState { kHead, kBody };

  EgressProxy::Impl& p_;
  tcp::socket client_;
  tcp::socket upstream_;
  tcp::resolver resolver_;
  asio::steady_timer timer_;
  // After the sockets they refer to, so they are destroyed first.
  std::unique_ptr<ClientTls> client_tls_;
  std::unique_ptr<UpstreamTls> upstream_tls_;
  std::unique_ptr<ByteStream> cs_, us_;  // client and upstream sides of an HTTP exchange
  Phase phase_ = Phase::kHead;
  Clock::time_point last_activity_;

  tcp::endpoint peer_, local_;
  std::string client_addr_;
  std::string head_buf_;
  bool saw_newline_ = false;
  RequestHead head_;
  std::string early_;  // client bytes read before the relay or TLS took over
  std::string host_;
  uint16_t port_ = 0;
  std::string target_;  // "host:port", for messages
  bool identified_ = false;
  Caller caller_;
  // Transparent: where the client was going, and whether host_ is a name it sent (else the address).
  const bool transparent_ = false;
  bool named_by_dns_ = false;  // host_ is what the sandbox's DNS answered for the original address
  tcp::endpoint original_;
  bool named_ = false;
  SniffKind sniff_kind_ = SniffKind::kIncomplete;
  bool sniff_final_ = false;  // the sniff timer fired: decide on the bytes so far
  bool tried_names_ = false;
  std::vector<std::string> candidates_;  // the policy's hosts on this port, for a nameless connection

  uint64_t generation_ = 0, version_ = 0;  // of the policy that decided this connection last
  policy::ConnectDecision conn_;
  // A plain request's judgement, made before connecting. Its rule points into conn_'s policy,
  // which only refresh() replaces, and refresh() never runs on a plain (single-request) connection.
  policy::RequestDecision first_;
  bool connect_reported_ = false;
  std::vector<Cidr> allowed_;
  std::vector<tcp::endpoint> endpoints_;
  size_t next_endpoint_ = 0;
  std::string connect_errors_;

  Pipe up_;    // client -> upstream (byte counts also in HTTP mode)
  Pipe down_;  // upstream -> client

  // HTTP mode.
  bool single_ = false;
  bool tls_ = false;
  std::string host_header_;
  std::vector<char> cbuf_, ubuf_;
  std::string req_in_, up_out_;
  ReqState req_state_ = ReqState::kHead, after_body_ = ReqState::kHead;
  BodyFramer req_body_ = BodyFramer::none();
  bool client_reading_ = false, writing_up_ = false, client_eof_ = false;
  std::deque<std::string> methods_;  // of requests sent upstream and not yet answered
  std::string resp_in_, down_out_;
  RespState resp_state_ = RespState::kHead;
  BodyFramer resp_body_ = BodyFramer::none();
  bool upstream_reading_ = false, writing_down_ = false, upstream_eof_ = false;
  bool response_done_ = false, resp_close_ = false, sent_response_bytes_ = false;
  std::string deny_;  // the refusal waiting for earlier responses to finish

  std::string final_;  // the last thing the client is sent
  bool final_waiting_ = false;
  std::vector<char> drain_buf_;
  size_t drained_ = 0;

  // inference.local (shares cs_, req_in_, req_body_, cbuf_, down_out_ and the flags of HTTP mode).
  enum class InfState { kHead, kBody, kCalling, kStopped };
  bool inference_ = false;
  InfState inf_state_ = InfState::kHead;
  RequestHead inf_req_;
  std::string inf_body_;
  bool inf_close_ = false;  // the connection ends after this response
  std::shared_ptr<ProxySink> inf_sink_;  // the call in flight
  uint64_t inf_call_ = 0;                // its number; the sink's posts carry theirs
  bool inf_head_sent_ = false;
  BodyMode inf_mode_ = BodyMode::kNone;
  std::string inf_out_;  // response bytes not yet handed to a write
  bool inf_complete_ = false, inf_abort_ = false;  // once inf_out_ is written: next request / cut
};

void ProxySink::post(std::function<void(Connection&, uint64_t)> f, bool last) {
  {
    std::lock_guard lock(mu_);
    if (cancelled_ || ended_) return;
    if (last) ended_ = true;
  }
  std::lock_guard lock(gate_->mu);
  if (!gate_->io) return;  // the proxy is gone
  asio::post(*gate_->io, [conn = conn_, call = call_, f = std::move(f)] {
    if (auto c = conn.lock()) f(*c, call);
  });
}

void ProxySink::head(int status, std::vector<HeaderField> headers) {
  post([status, h = std::move(headers)](Connection& c, uint64_t call) mutable { c.on_inf_head(call, status, std::move(h)); },
       false);
}

void ProxySink::chunk(std::string bytes) {
  if (bytes.empty()) return;
  post([b = std::move(bytes)](Connection& c, uint64_t call) mutable { c.on_inf_chunk(call, std::move(b)); }, false);
}

void ProxySink::end(std::string error) {
  post([e = std::move(error)](Connection& c, uint64_t call) mutable { c.on_inf_end(call, std::move(e)); }, true);
}

EgressProxy::Impl::Impl(Options o, std::shared_ptr<const policy::CompiledPolicy> policy, uint64_t version, EventFn e)
    : opts(std::move(o)), on_event(std::move(e)), workers(std::max<size_t>(1, opts.identify_threads)) {
  if (!policy) throw Error(Code::kInvalidArgument, "the egress proxy needs a policy", "policy");
  snapshot = std::make_shared<const Snapshot>(Snapshot{std::move(policy), version, 0});
  gate->io = &io;
  if (opts.identify) {
    identify = opts.identify;
  } else {
    if (opts.agent_init_pid <= 0)
      throw Error(Code::kInvalidArgument, "the egress proxy needs the agent's init pid to identify callers",
                  "agent_init_pid");
    identifier = std::make_unique<BinaryIdentifier>(opts.agent_init_pid);
    identify = [id = identifier.get()](const tcp::endpoint& peer, const tcp::endpoint& local) {
      return id->identify(peer, local);
    };
  }
  if (opts.ca) upstream_tls = SandboxCa::client_ctx(opts.upstream_ca_file);
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
  accept(acceptor, false);  // queued now, served once run_in_thread() runs the loop
  if (opts.transparent) {
    tcp::endpoint tep(addr, opts.transparent_port);
    where = format_authority(addr.to_string(), opts.transparent_port) + " (transparent)";
    tacceptor.open(tep.protocol(), ec);
    check("socket");
    tacceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    check("SO_REUSEADDR");
    tacceptor.bind(tep, ec);
    check("bind");
    tacceptor.listen(asio::socket_base::max_listen_connections, ec);
    check("listen");
    transparent_endpoint = tacceptor.local_endpoint(ec);
    check("getsockname");
    accept(tacceptor, true);
  }
}

void EgressProxy::Impl::accept(tcp::acceptor& a, bool transparent) {
  a.async_accept([this, &a, transparent](asio::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || !a.is_open()) return;
    if (ec) {
      // Typically EMFILE (out of descriptors): pause instead of spinning on the same error.
      spdlog::warn("egress proxy: accept failed: {}; retrying in {} ms", ec.message(), kAcceptRetry.count());
      auto retry = std::make_shared<asio::steady_timer>(io, kAcceptRetry);
      retry->async_wait([this, &a, transparent, retry](asio::error_code e) {
        if (!e) accept(a, transparent);
      });
      return;
    }
    bool over_limit = active.load() >= opts.max_connections;
    std::make_shared<Connection>(*this, std::move(s), transparent)->start(over_limit);
    accept(a, transparent);
  });
}

void EgressProxy::Impl::shutdown() {
  asio::error_code ignored;  // shutting down: a listener that will not close cleanly is gone anyway
  acceptor.close(ignored);
  tacceptor.close(ignored);
  accept_retry.cancel();
  auto all = std::move(conns);
  conns.clear();
  for (auto& [ptr, weak] : all)
    if (auto c = weak.lock()) c->close();
  // Do not wait for the aborted handlers or a getaddrinfo in flight: ~io_context frees them.
  io.stop();
}

EgressProxy::EgressProxy(Options opts, std::shared_ptr<const policy::CompiledPolicy> policy, uint64_t version,
                         EventFn on_event)
    : impl_(std::make_unique<Impl>(std::move(opts), std::move(policy), version, std::move(on_event))) {}

EgressProxy::~EgressProxy() {
  stop();
  {
    // Inference handlers may still hold sinks: from now on they post nowhere.
    std::lock_guard lock(impl_->gate->mu);
    impl_->gate->io = nullptr;
  }
  // Identification still running must not post to a loop that is going away unseen: wait for it.
  impl_->workers.join();
}

void EgressProxy::set_policy(std::shared_ptr<const policy::CompiledPolicy> policy, uint64_t version) {
  if (!policy) throw Error(Code::kInvalidArgument, "set_policy: the policy is null", "policy");
  {
    std::lock_guard lock(impl_->policy_mu);
    uint64_t gen = impl_->snapshot->generation + 1;
    impl_->snapshot = std::make_shared<const Snapshot>(Snapshot{std::move(policy), version, gen});
    impl_->generation.store(gen);
  }
  asio::post(impl_->io, [impl = impl_.get()] {
    // Copied: closing a connection removes it from the map.
    std::vector<std::shared_ptr<Connection>> open;
    for (auto& [ptr, weak] : impl->conns)
      if (auto c = weak.lock()) open.push_back(std::move(c));
    for (auto& c : open) c->on_policy_changed();
  });
}

uint64_t EgressProxy::policy_version() const { return impl_->current()->version; }

uint16_t EgressProxy::port() const { return impl_->port; }

uint16_t EgressProxy::transparent_port() const {
  return impl_->opts.transparent ? impl_->transparent_endpoint.port() : 0;
}

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
