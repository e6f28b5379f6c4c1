#include "services/gateway-api/exec_connect.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <atomic>
#include <utility>  // before Boost 1.74's asio, which uses std::exchange without it
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast.hpp>
#include <boost/beast/ssl.hpp>
#include <deque>

#include "shared/error.h"

namespace bulwark::gateway {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::json;

namespace {
std::string decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

uint32_t size_param(const std::string& name, const std::string& v) {
  if (v.empty() || v.size() > 5 || v.find_first_not_of("0123456789") != std::string::npos || std::stoul(v) == 0 || std::stoul(v) > 10000)
    throw Error(Code::kInvalidArgument, name + ": must be a number of characters from 1 to 10000, got '" + v + "'", name);
  return static_cast<uint32_t>(std::stoul(v));
}

std::string error_body(const Error& e) {
  json j = {{"error", {{"code", code_name(e.code())}, {"message", e.what()}}}};
  if (!e.field().empty()) j["error"]["field"] = e.field();
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}
}  // namespace

ConnectTarget parse_connect_target(const std::string& target) {
  const std::string prefix = "/v1/sandboxes/", suffix = "/connect";
  std::string path = target.substr(0, target.find('?'));
  if (path.rfind(prefix, 0) != 0 || path.size() <= prefix.size() + suffix.size() ||
      path.compare(path.size() - suffix.size(), suffix.size(), suffix) != 0)
    throw Error(Code::kNotFound, "no route GET " + path + " here: this listener serves /v1/sandboxes/{sandbox_id}/connect only");
  ConnectTarget t;
  t.sandbox_ref = decode(path.substr(prefix.size(), path.size() - prefix.size() - suffix.size()));
  if (t.sandbox_ref.empty() || t.sandbox_ref.find('/') != std::string::npos)
    throw Error(Code::kNotFound, "no route GET " + path + " here: this listener serves /v1/sandboxes/{sandbox_id}/connect only");
  std::vector<std::string> command;
  if (size_t q = target.find('?'); q != std::string::npos) {
    std::string query = target.substr(q + 1);
    for (size_t at = 0; at <= query.size();) {
      size_t amp = query.find('&', at);
      std::string kv = query.substr(at, amp == std::string::npos ? std::string::npos : amp - at);
      at = amp == std::string::npos ? query.size() + 1 : amp + 1;
      if (kv.empty()) continue;
      size_t eq = kv.find('=');
      std::string k = decode(kv.substr(0, eq)), v = eq == std::string::npos ? "" : decode(kv.substr(eq + 1));
      if (k == "rows") t.rows = size_param(k, v);
      else if (k == "cols") t.cols = size_param(k, v);
      else if (k == "command") command.push_back(v);
      else throw Error(Code::kInvalidArgument, k + ": unknown query parameter of connect (rows, cols, command)", k);
    }
  }
  if (!command.empty()) {
    if (command[0].empty()) throw Error(Code::kInvalidArgument, "command: the first must not be empty", "command");
    t.command = command;
  }
  return t;
}

std::optional<std::pair<uint32_t, uint32_t>> parse_resize(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("resize") || !j["resize"].is_object()) return std::nullopt;
  const auto& r = j["resize"];
  if (!r.contains("rows") || !r.contains("cols") || !r["rows"].is_number_unsigned() || !r["cols"].is_number_unsigned()) return std::nullopt;
  auto rows = r["rows"].get<uint64_t>(), cols = r["cols"].get<uint64_t>();
  if (rows == 0 || cols == 0 || rows > 10000 || cols > 10000) return std::nullopt;
  return std::make_pair(static_cast<uint32_t>(rows), static_cast<uint32_t>(cols));
}

// What the accept loop holds of a connection, whichever stream it runs on.
class ConnBase {
 public:
  virtual ~ConnBase() = default;
  virtual void start() = 0;
  virtual void end_exec() = 0;
  virtual void join_pump() = 0;
};

// One client: the handshake, then the WebSocket relayed to an ExecSession. All WebSocket work
// happens on the connection's own io_context thread; the pump thread only reads NATS frames and
// posts writes to it. Stream: beast::tcp_stream, or beast::ssl_stream of one (--tls).
template <class Stream>
class Conn : public ConnBase, public std::enable_shared_from_this<Conn<Stream>> {
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

 public:
  Conn(net::io_context& ioc, tcp::socket sock, ExecService& exec, const ConnectServer::Admit& admit)
    requires(!kTls)
      : ioc_(ioc), ws_(beast::tcp_stream(std::move(sock))), exec_(exec), admit_(admit) {}
  Conn(net::io_context& ioc, tcp::socket sock, net::ssl::context& ssl, ExecService& exec, const ConnectServer::Admit& admit)
    requires(kTls)
      : ioc_(ioc), ws_(beast::tcp_stream(std::move(sock)), ssl), exec_(exec), admit_(admit) {}

  void start() override {
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(10));
    if constexpr (kTls) {
      // A client without a certificate the CA signed fails here, before any HTTP is read.
      ws_.next_layer().async_handshake(net::ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
        if (ec) return spdlog::debug("connect: TLS handshake failed: {}", ec.message());
        self->read_request();
      });
    } else {
      read_request();
    }
  }
  void join_pump() override {
    if (pump_.joinable()) pump_.join();
  }
  void end_exec() override {
    closed_ = true;
    if (session_ && !ended_) {
      try {
        session_->kill();
      } catch (const std::exception&) {
      }
    }
  }

 private:
  void read_request() {
    http::async_read(ws_.next_layer(), buf_, req_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_request(ec); });
  }

  void refuse(const Error& e) {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(http_status(e.code())), req_.version());
    res->set(http::field::content_type, "application/json");
    res->body() = error_body(e);
    res->keep_alive(false);
    res->prepare_payload();
    http::async_write(ws_.next_layer(), *res, [self = this->shared_from_this(), res](beast::error_code, size_t) {
      beast::error_code ignored;
      beast::get_lowest_layer(self->ws_).socket().shutdown(tcp::socket::shutdown_send, ignored);
    });
  }

  void on_request(beast::error_code ec) {
    if (ec) return;
    ConnectTarget t;
    try {
      t = parse_connect_target(std::string(req_.target()));
      if (req_.method() != http::verb::get) throw Error(Code::kInvalidArgument, "connect takes GET with Upgrade: websocket");
      auto s = admit_(std::string(req_[http::field::authorization]), t.sandbox_ref);
      check_exec_allowed(s);
      sandbox_id_ = s.sandbox_id();
      if (!websocket::is_upgrade(req_))
        throw Error(Code::kInvalidArgument, "connect needs a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)");
    } catch (const Error& e) {
      return refuse(e);
    } catch (const std::exception& e) {
      return refuse(Error(Code::kInternal, e.what()));
    }
    target_ = t;
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.async_accept(req_, [self = this->shared_from_this()](beast::error_code ec2) { self->on_accept(ec2); });
  }

  void on_accept(beast::error_code ec) {
    if (ec) return;
    v1::ExecRequest r;
    for (const auto& a : target_.command) r.add_command(a);
    r.set_tty(true);
    r.set_stdin_open(true);
    r.set_rows(target_.rows);
    r.set_cols(target_.cols);
    try {
      session_ = exec_.open(sandbox_id_, r);
    } catch (const Error& e) {
      enqueue(false, error_body(e));
      close_after_ = true;
      return;
    }
    spdlog::info("connect: a terminal in sandbox {} ({}x{})", sandbox_id_, target_.rows, target_.cols);
    pump_ = std::thread([self = this->shared_from_this()] { self->pump(); });
    read();
  }

  void read() {
    ws_.async_read(in_, [self = this->shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->end_exec();  // the client left (or closed): its command goes too
      std::string data = beast::buffers_to_string(self->in_.data());
      self->in_.consume(self->in_.size());
      try {
        if (self->ws_.got_binary()) self->session_->send_data(data);
        else if (auto size = parse_resize(data)) self->session_->resize(size->first, size->second);
      } catch (const std::exception& e) {
        spdlog::warn("connect: input lost: {}", e.what());
      }
      self->read();
    });
  }

  // NATS frames -> WebSocket writes, on the io thread.
  void pump() {
    try {
      while (!closed_) {
        auto f = session_->next(std::chrono::milliseconds(200));
        if (!f) continue;
        if (f->has_output()) {
          net::post(ioc_, [self = this->shared_from_this(), d = f->output().data()] { self->enqueue(true, d); });
        } else if (f->has_end()) {
          ended_ = true;
          json j = {{"exit_code", f->end().exit_code()}};
          if (!f->end().error().empty()) j["error"] = {{"code", "unavailable"}, {"message", f->end().error()}};
          net::post(ioc_, [self = this->shared_from_this(), t = j.dump(-1, ' ', false, json::error_handler_t::replace)] {
            self->enqueue(false, t);
            self->close_after_ = true;
          });
          return;
        }
      }
    } catch (const Error& e) {
      ended_ = true;
      net::post(ioc_, [self = this->shared_from_this(), t = error_body(e)] {
        self->enqueue(false, t);
        self->close_after_ = true;
      });
    }
  }

  void enqueue(bool binary, std::string data) {
    out_.emplace_back(binary, std::move(data));
    if (!writing_) write_next();
  }
  void write_next() {
    if (out_.empty()) {
      writing_ = false;
      if (close_after_ && !closing_) {
        closing_ = true;
        ws_.async_close(websocket::close_code::normal, [self = this->shared_from_this()](beast::error_code) {});
      }
      return;
    }
    writing_ = true;
    ws_.binary(out_.front().first);
    ws_.async_write(net::buffer(out_.front().second), [self = this->shared_from_this()](beast::error_code ec, size_t) {
      if (ec) {
        self->out_.clear();
        self->writing_ = false;
        return self->end_exec();
      }
      self->out_.pop_front();
      self->write_next();
    });
  }

  net::io_context& ioc_;
  websocket::stream<Stream> ws_;
  ExecService& exec_;
  const ConnectServer::Admit& admit_;
  beast::flat_buffer buf_, in_;
  http::request<http::string_body> req_;
  ConnectTarget target_;
  std::string sandbox_id_;
  std::unique_ptr<ExecSession> session_;
  std::thread pump_;
  std::atomic<bool> closed_{false}, ended_{false};
  std::deque<std::pair<bool, std::string>> out_;
  bool writing_ = false, close_after_ = false, closing_ = false;
};

struct ConnectServer::Impl {
  ExecService& exec;
  Admit admit;
  net::io_context accept_ioc;
  tcp::acceptor acceptor{accept_ioc};
  std::thread acceptor_thread;
  std::mutex mu;
  struct Running {
    std::unique_ptr<net::io_context> ioc;
    std::shared_ptr<ConnBase> conn;
    std::thread thread;
    std::atomic<bool> done{false};
  };
  std::list<Running> conns;
  bool stopping = false;

  std::unique_ptr<net::ssl::context> ssl;  // set: every connection speaks TLS first

  Impl(ExecService& e, Admit a) : exec(e), admit(std::move(a)) {}

  void accept_loop() {
    for (;;) {
      auto ioc = std::make_unique<net::io_context>(1);
      beast::error_code ec;
      tcp::socket sock(*ioc);
      acceptor.accept(sock, ec);
      if (ec) {
        std::lock_guard lock(mu);
        if (stopping) return;
        continue;
      }
      sock.set_option(tcp::no_delay(true), ec);
      std::lock_guard lock(mu);
      if (stopping) return;
      // Reap finished connections.
      for (auto it = conns.begin(); it != conns.end();) {
        if (it->done) {
          it->thread.join();
          it = conns.erase(it);
        } else {
          ++it;
        }
      }
      auto& r = conns.emplace_back();
      r.ioc = std::move(ioc);
      if (ssl)
        r.conn = std::make_shared<Conn<beast::ssl_stream<beast::tcp_stream>>>(*r.ioc, std::move(sock), *ssl, exec, admit);
      else
        r.conn = std::make_shared<Conn<beast::tcp_stream>>(*r.ioc, std::move(sock), exec, admit);
      r.thread = std::thread([&r] {
        r.conn->start();
        try {
          r.ioc->run();
        } catch (const std::exception& e) {
          spdlog::error("connect: {}", e.what());
        }
        r.conn->end_exec();
        r.conn->join_pump();
        r.conn.reset();
        r.done = true;
      });
    }
  }
};

ConnectServer::ConnectServer(const std::string& addr, int port, ExecService& exec, Admit admit, const ServerTls& tls)
    : impl_(std::make_unique<Impl>(exec, std::move(admit))) {
  if (tls.enabled()) {
    impl_->ssl = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
    configure_server_ctx(impl_->ssl->native_handle(), tls);
  }
  beast::error_code ec;
  tcp::endpoint ep(net::ip::make_address(addr, ec), static_cast<unsigned short>(port));
  if (ec) throw Error(Code::kInvalidArgument, "connect listener: bad address '" + addr + "'");
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    throw Error(Code::kUnavailable, "connect listener: cannot listen on " + addr + ":" + std::to_string(port) + ": " + ec.message() +
                                        " (choose another --connect-port, or 0 to switch connect off)");
  port_ = impl_->acceptor.local_endpoint().port();
  impl_->acceptor_thread = std::thread([this] { impl_->accept_loop(); });
}

ConnectServer::~ConnectServer() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  beast::error_code ec;
  impl_->acceptor.cancel(ec);
  ::shutdown(impl_->acceptor.native_handle(), SHUT_RDWR);  // wakes the blocking accept
  impl_->acceptor.close(ec);
  if (impl_->acceptor_thread.joinable()) impl_->acceptor_thread.join();
  // Each connection's thread then kills its command and ends.
  for (auto& r : impl_->conns) r.ioc->stop();
  for (auto& r : impl_->conns)
    if (r.thread.joinable()) r.thread.join();
}

}  // namespace bulwark::gateway
