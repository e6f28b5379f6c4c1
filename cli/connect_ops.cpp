#include "cli/connect_ops.h"

#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <utility>  // before Boost 1.74's asio, which uses std::exchange without it
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast.hpp>
#include <boost/beast/ssl.hpp>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/client.h"
#include "shared/process.h"

namespace bulwark::cli {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::json;

ConnectEndpoint connect_endpoint(const std::string& url, int connect_port) {
  std::string rest = url;
  bool tls = false;
  if (rest.rfind("http://", 0) == 0) {
    rest = rest.substr(7);
  } else if (rest.rfind("https://", 0) == 0) {
    rest = rest.substr(8);
    tls = true;
  }
  rest = rest.substr(0, rest.find('/'));
  size_t colon = rest.rfind(':');
  std::string host = colon == std::string::npos ? rest : rest.substr(0, colon);
  int port = tls ? 443 : 80;
  if (colon != std::string::npos) {
    try {
      port = std::stoi(rest.substr(colon + 1));
    } catch (const std::exception&) {
      throw CliError{kUsage, "--gateway '" + url + "' is not a URL like http://127.0.0.1:8080"};
    }
  }
  if (host.empty()) throw CliError{kUsage, "--gateway '" + url + "' is not a URL like http://127.0.0.1:8080"};
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);  // [::1]
  return {host, std::to_string(connect_port > 0 ? connect_port : port + 1), tls};
}

std::string connect_target(const std::string& ref, uint32_t rows, uint32_t cols, const std::vector<std::string>& command) {
  std::string t = "/v1/sandboxes/" + httplib::detail::encode_query_param(ref) + "/connect?rows=" + std::to_string(rows) +
                  "&cols=" + std::to_string(cols);
  for (const auto& a : command) t += "&command=" + httplib::detail::encode_query_param(a);
  return t;
}

std::string resize_message(uint32_t rows, uint32_t cols) { return json{{"resize", {{"rows", rows}, {"cols", cols}}}}.dump(); }

std::optional<int> exit_of_text_frame(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  if (j.contains("error") && j["error"].is_object() && !j.contains("exit_code"))
    throw CliError{kFailure, "connect: " + j["error"].value("message", std::string("failed"))};
  if (j.contains("exit_code") && j["exit_code"].is_number_integer()) return j["exit_code"].get<int>();
  return std::nullopt;
}

namespace {
int winch_pipe[2] = {-1, -1};
void on_winch(int) { (void)!::write(winch_pipe[1], "w", 1); }

// Raw mode for the session's length; restored however it ends.
class RawTerminal {
 public:
  RawTerminal() {
    if (!::isatty(STDIN_FILENO) || ::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    if (::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) active_ = true;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  termios saved_{};
  bool active_ = false;
};

std::pair<uint32_t, uint32_t> terminal_size() {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) return {ws.ws_row, ws.ws_col};
  return {24, 80};
}

// The TLS client context for wss://: TLS 1.2+, the gateway's certificate checked against
// --ca-cert (else the system roots), and the client certificate for mTLS when given.
void setup_client_tls(net::ssl::context& ctx, const TlsFiles& tls) {
  ctx.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 | net::ssl::context::no_sslv3 |
                  net::ssl::context::no_tlsv1 | net::ssl::context::no_tlsv1_1);
  ctx.set_verify_mode(net::ssl::verify_peer);
  if (tls.ca_cert.empty()) ctx.set_default_verify_paths();
  else ctx.load_verify_file(tls.ca_cert);
  if (!tls.client_cert.empty()) {
    ctx.use_certificate_chain_file(tls.client_cert);
    ctx.use_private_key_file(tls.client_key, net::ssl::context::pem);
  }
}

// Connects the TCP (and for wss:// the TLS) layer under ws.
void connect_transport(websocket::stream<tcp::socket>& ws, net::io_context& ioc, const ConnectEndpoint& ep) {
  tcp::resolver resolver(ioc);
  net::connect(ws.next_layer(), resolver.resolve(ep.host, ep.port));
  ws.next_layer().set_option(tcp::no_delay(true));
}
void connect_transport(websocket::stream<net::ssl::stream<tcp::socket>>& ws, net::io_context& ioc, const ConnectEndpoint& ep) {
  tcp::resolver resolver(ioc);
  auto& sock = beast::get_lowest_layer(ws);
  net::connect(sock, resolver.resolve(ep.host, ep.port));
  sock.set_option(tcp::no_delay(true));
  SSL* ssl = ws.next_layer().native_handle();
  beast::error_code not_ip;
  net::ip::make_address(ep.host, not_ip);
  bool ip = !not_ip;
  // SNI for names only (RFC 6066), and the certificate checked against the name or IP dialled.
  if (!ip && SSL_set_tlsext_host_name(ssl, ep.host.c_str()) != 1)
    throw CliError{kFailure, "connect: cannot set TLS server name " + ep.host};
  ws.next_layer().set_verify_callback(net::ssl::host_name_verification(ep.host));
  ws.next_layer().handshake(net::ssl::stream_base::client);
}

template <class Ws>
int run_terminal(Ws& ws, net::io_context& ioc, const ConnectEndpoint& ep, const std::string& token, const std::string& ref,
                 const std::vector<std::string>& command) {
  auto [rows, cols] = terminal_size();
  try {
    connect_transport(ws, ioc, ep);
    ws.set_option(websocket::stream_base::decorator([&](websocket::request_type& req) {
      if (!token.empty()) req.set(beast::http::field::authorization, "Bearer " + token);
    }));
    websocket::response_type res;
    beast::error_code ec;
    // Async: Boost 1.74's sync handshake drops the response of a refusal (and with it the error).
    ws.async_handshake(res, ep.host + ":" + ep.port, connect_target(ref, rows, cols, command), [&](beast::error_code e) { ec = e; });
    ioc.run();
    ioc.restart();
    if (ec) {
      if (res.result_int() >= 400) {
        json j = json::parse(res.body(), nullptr, false);
        std::string msg = !j.is_discarded() && j.contains("error") ? j["error"].value("message", "") : "HTTP " + std::to_string(res.result_int());
        int s = res.result_int();
        throw CliError{s == 404 ? kNotFound : s == 401 || s == 403 ? kDenied : kFailure, "connect: " + msg};
      }
      throw beast::system_error(ec);
    }
  } catch (const beast::system_error& e) {
    // An alert from the server (TLS 1.3 reports a missing client certificate only after the
    // handshake, at the first read) or the connection cut mid-handshake.
    const auto& cat = e.code().category();
    if (ep.tls && (cat == net::error::get_ssl_category() || cat == net::ssl::error::get_stream_category() ||
                   e.code() == net::error::eof))
      throw CliError{kUnreachable, "connect: the TLS handshake with " + ep.host + ":" + ep.port + " failed (" + e.code().message() +
                                       "): check --ca-cert, and that --client-cert/--client-key were issued by the gateway's CA"};
    throw CliError{kUnreachable, "connect: cannot reach the gateway's connect listener at " + ep.host + ":" + ep.port + " (" +
                                     e.code().message() + "): is the gateway running with --connect-port? Else pass --connect-port"};
  }

  if (::pipe2(winch_pipe, O_CLOEXEC | O_NONBLOCK) != 0) throw CliError{kFailure, "connect: pipe2 failed"};
  Fd winch_r(winch_pipe[0]), winch_w(winch_pipe[1]);
  int stop[2];
  if (::pipe2(stop, O_CLOEXEC) != 0) throw CliError{kFailure, "connect: pipe2 failed"};
  Fd stop_r(stop[0]), stop_w(stop[1]);
  struct sigaction sa {};
  sa.sa_handler = on_winch;
  ::sigaction(SIGWINCH, &sa, nullptr);

  std::optional<int> code;
  std::optional<CliError> failed;
  {
    RawTerminal raw;
    std::mutex write_mu;
    auto send = [&](bool binary, const std::string& data) {
      std::lock_guard lock(write_mu);
      beast::error_code ec;
      ws.binary(binary);
      ws.write(net::buffer(data), ec);
    };
    // stdin and window changes -> the WebSocket.
    std::thread input([&] {
      char buf[4096];
      bool eof = false;
      for (;;) {
        pollfd fds[3] = {{eof ? -1 : STDIN_FILENO, POLLIN, 0}, {winch_r.get(), POLLIN, 0}, {stop_r.get(), POLLIN, 0}};
        if (::poll(fds, 3, -1) < 0) continue;
        if (fds[2].revents) return;
        if (fds[1].revents & POLLIN) {
          while (::read(winch_r.get(), buf, sizeof buf) > 0) {
          }
          auto [r, c] = terminal_size();
          send(false, resize_message(r, c));
        }
        if (fds[0].revents & (POLLIN | POLLHUP)) {
          ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
          if (n > 0) {
            send(true, std::string(buf, static_cast<size_t>(n)));
          } else {
            eof = true;
            send(true, "\x04");  // end of input, as Ctrl-D at the remote terminal
          }
        }
      }
    });
    // The WebSocket -> stdout, until the remote shell ends.
    beast::flat_buffer buf;
    for (;;) {
      beast::error_code ec;
      ws.read(buf, ec);
      if (ec) break;
      std::string data = beast::buffers_to_string(buf.data());
      buf.consume(buf.size());
      if (ws.got_binary()) {
        for (size_t at = 0; at < data.size();) {
          ssize_t n = ::write(STDOUT_FILENO, data.data() + at, data.size() - at);
          if (n <= 0) break;
          at += static_cast<size_t>(n);
        }
      } else {
        try {
          if (auto c = exit_of_text_frame(data)) code = c;
        } catch (const CliError& e) {
          failed = e;
        }
      }
    }
    (void)!::write(stop_w.get(), "s", 1);
    input.join();
  }
  ::signal(SIGWINCH, SIG_DFL);
  if (failed) throw *failed;
  if (!code) throw CliError{kFailure, "connect: the connection ended before the shell's exit code"};
  return *code;
}
}  // namespace

int connect_terminal(const std::string& gateway_url, int connect_port, const std::string& token, const std::string& ref,
                     const std::vector<std::string>& command, const TlsFiles& tls) {
  auto ep = connect_endpoint(gateway_url, connect_port);
  net::io_context ioc;
  if (!ep.tls) {
    websocket::stream<tcp::socket> ws(ioc);
    return run_terminal(ws, ioc, ep, token, ref, command);
  }
  check_tls_files(gateway_url, tls);
  net::ssl::context ctx(net::ssl::context::tls_client);
  try {
    setup_client_tls(ctx, tls);
  } catch (const beast::system_error& e) {
    throw CliError{kUsage, "connect: cannot load the TLS files (--ca-cert, --client-cert, --client-key): " + e.code().message()};
  }
  websocket::stream<net::ssl::stream<tcp::socket>> ws(ioc, ctx);
  return run_terminal(ws, ioc, ep, token, ref, command);
}

}  // namespace bulwark::cli
