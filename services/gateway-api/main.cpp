// bulwark-gateway-api: the REST front door and owner of sandbox records. See README.md.
#include "services/gateway-api/gateway.h"

int main(int argc, char** argv) {
  bulwark::Service svc("gateway-api");
  bulwark::gateway::GatewayOptions o;
  double start_timeout_s = 120;
  int rate_limit = 100, rate_burst = 200;
  std::string auth = "token";
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
      .integer("rate-burst", &rate_burst, "REST requests a client address may send at once before --rate-limit applies", 1, 1000000);
  return svc.run(argc, argv, [&](bulwark::Bus& bus) {
    o.defaults.start_timeout = std::chrono::milliseconds(static_cast<int64_t>(start_timeout_s * 1000));
    o.limits = {static_cast<double>(rate_limit), static_cast<double>(rate_burst)};
    o.instance_id = svc.instance_id();
    o.auth = auth == "token";
    return std::make_unique<bulwark::gateway::Gateway>(bus, o);
  });
}
