#pragma once
// TLS for the gateway's listeners (REST and the connect WebSocket): which PKI directory, and one
// SSL_CTX setup shared by httplib::SSLServer and Asio. With a client CA the handshake requires a
// client certificate that CA signed (mTLS): it authenticates the channel, API tokens still
// authorize each call (docs/security.md).
#include <openssl/types.h>

#include <memory>
#include <string>
#include <vector>

namespace httplib {
class Server;
}

namespace bulwark::gateway {

// PEM files a listener presents and checks; cert_file "" = plain TCP.
struct ServerTls {
  std::string cert_file, key_file;
  std::string client_ca_file;  // "" = no client certificate asked for (--client-auth token-only)
  bool enabled() const { return !cert_file.empty(); }
};

// Whether TLS is on and where its PKI lives, from --tls (""/auto/off), --tls-dir and --db. Pure.
// "off" is off; "auto", or a --tls-dir with no --tls, is on, in --tls-dir or else <dir of --db>/pki.
struct TlsChoice {
  bool on = false;
  std::string dir;
};
TlsChoice choose_tls(const std::string& mode, const std::string& tls_dir, const std::string& db_path);

// Creates (first start) or checks the PKI in dir (shared/pki.h) with extra server names, logs
// where the files are and the CA fingerprint, and returns the gateway's files; mtls: require
// client certificates signed by its CA. Throws Error (see pki::ensure_pki).
ServerTls prepare_tls(const std::string& dir, const std::vector<std::string>& extra_names, bool mtls);

// Sets up a server context: TLS 1.2+, no renegotiation, the certificate chain and key (checked
// to match), and with client_ca_file SSL_VERIFY_PEER | FAIL_IF_NO_PEER_CERT against it. Throws
// Error naming the file at fault.
void configure_server_ctx(SSL_CTX* ctx, const ServerTls& tls);

// An httplib::SSLServer set up by configure_server_ctx when tls is enabled, else a plain Server.
// Throws Error when the TLS files cannot be used.
std::unique_ptr<httplib::Server> make_rest_server(const ServerTls& tls);

}  // namespace bulwark::gateway
