// bulwark-gateway-api: the REST front door and owner of sandbox records. See README.md.
#include <ctime>

#include "services/gateway-api/gateway.h"
#include "shared/nats_auth.h"

int main(int argc, char** argv) {
  bulwark::Service svc("gateway-api");
  bulwark::gateway::GatewayOptions o;
  double start_timeout_s = 120;
  int rate_limit = 100, rate_burst = 200;
  std::string auth = "token";
  std::string nats_account_seed;
  svc.flags()
      .text("http-addr", &o.http_addr, "address to listen on")
      .integer("http-port", &o.http_port, "port to listen on", 1, 65535)
      .text("db", &o.db_path, "SQLite database file")
      .text("provider-key-file", &o.provider_key_file,
            "key ring that seals provider credentials (default: provider.key beside --db; created, mode 0600)")
      .integer("kv-replicas", &o.kv_replicas, "replicas of the inference_routes KV bucket (> 1 only on a NATS cluster)", 1, 5)
      .text("default-image", &o.defaults.image, "image for sandboxes that name none")
      .seconds("start-timeout", &start_timeout_s, "how long a sandbox may take to become READY", 1, 86400)
      .integer("rate-limit", &rate_limit, "REST requests per second per client address (0: no limit; /healthz is never limited)", 0,
               1000000)
      .choice("auth", &auth, "token: every REST call but /healthz needs an API token (docs/security.md); none: no checks, local development only",
              {"token", "none"})
      .text("bootstrap-token-file", &o.bootstrap_token_file,
            "where the first admin token is written when there is no token yet (default: admin.token beside --db; mode 0600)")
      .integer("connect-port", &o.connect_port,
               "port of the WebSocket listener for `sandbox connect` (on --http-addr; -1: --http-port + 1, 0: off)", -1, 65535)
      .text("nats-account-seed", &nats_account_seed,
            "file with the NATS account's nkey seed (bulwark-nats-auth --dir DIR writes DIR/account.seed): each sandbox's supervisor then "
            "gets NATS credentials for its own subjects only (docs/security.md, NATS); default: none")
      .integer("rate-burst", &rate_burst, "REST requests a client address may send at once before --rate-limit applies", 1, 1000000);
  std::string tls_mode, tls_dir, client_auth = "mtls";
  std::vector<std::string> tls_sans;
  svc.flags()  // TLS of the REST and connect listeners (tls.h, docs/security.md)
      .choice("tls", &tls_mode,
              "auto: serve HTTPS and wss://, with the PKI in --tls-dir (created on first start); off: plain HTTP; "
              "default: auto when --tls-dir is set, else off",
              {"", "auto", "off"})
      .text("tls-dir", &tls_dir, "PKI directory (CA, server and client certificates; default with --tls auto: pki beside --db)")
      .list("tls-san", &tls_sans, "extra DNS name or IP for the server certificates when they are created (repeatable)")
      .choice("client-auth", &client_auth,
              "with TLS: mtls: a client certificate signed by the PKI's CA is required at the handshake; token-only: none asked for "
              "(API tokens authorize either way)",
              {"mtls", "token-only"});
  return svc.run(argc, argv, [&](bulwark::Bus& bus) {
    o.defaults.start_timeout = std::chrono::milliseconds(static_cast<int64_t>(start_timeout_s * 1000));
    o.limits = {static_cast<double>(rate_limit), static_cast<double>(rate_burst)};
    o.instance_id = svc.instance_id();
    o.auth = auth == "token";
    if (!nats_account_seed.empty()) {
      auto account = bulwark::nats_auth::KeyPair::from_seed(bulwark::nats_auth::read_text_file(nats_account_seed, "nats-account-seed"));
      o.defaults.nats_creds = [account](const std::string& sandbox_id) {
        return bulwark::nats_auth::new_user_creds(account, "sandbox-" + sandbox_id,
                                                  bulwark::nats_auth::sandbox_permissions(sandbox_id), std::time(nullptr));
      };
    }
    if (auto tls = bulwark::gateway::choose_tls(tls_mode, tls_dir, o.db_path); tls.on)
      o.tls = bulwark::gateway::prepare_tls(tls.dir, tls_sans, client_auth == "mtls");
    return std::make_unique<bulwark::gateway::Gateway>(bus, o);
  });
}
