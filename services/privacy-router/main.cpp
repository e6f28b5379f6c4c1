// bulwark-privacy-router: serves inference.local for every sandbox: strips the agent's
// credentials, injects the backend's, routes by model, privacy and cost with fallback, and streams
// the answer back over NATS. See README.md.
#include "services/privacy-router/router.h"

namespace {
std::chrono::milliseconds ms(double seconds) { return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)); }
}  // namespace

int main(int argc, char** argv) {
  bulwark::Service svc("privacy-router");
  bulwark::privacy_router::RouterOptions o;
  double connect_s = 10, first_byte_s = 300, idle_s = 120, ttl_s = 60, grace_s = 10;
  svc.flags()
      .integer("max-concurrent", &o.max_concurrent, "calls handled at once; more are answered 503 at once", 1, 4096)
      .seconds("connect-timeout", &connect_s, "longest wait to connect to a backend", 0.1, 600)
      .seconds("first-byte-timeout", &first_byte_s, "longest wait for a backend's response head (then the next backend)", 0.1, 3600)
      .seconds("stream-idle-timeout", &idle_s, "a response that sends no bytes this long is cut", 0.1, 3600)
      .count("max-request-bytes", &o.max_request_bytes, "largest request body accepted (larger: 413)", 1024, 64u << 20)
      .text("backend-ca", &o.forward.backend_ca, "PEM file of CA certificates trusted for backends besides the system roots")
      .seconds("provider-ttl", &ttl_s, "how long a provider resolved through gateway-api is cached", 0, 3600)
      .seconds("shutdown-grace", &grace_s, "on SIGTERM, how long calls in flight may finish before they are cut", 0, 3600);
  return svc.run(argc, argv, [&](bulwark::Bus& bus) {
    o.forward.connect_timeout = ms(connect_s);
    o.forward.first_byte_timeout = ms(first_byte_s);
    o.forward.idle_timeout = ms(idle_s);
    o.provider_ttl = ms(ttl_s);
    o.shutdown_grace = ms(grace_s);
    return std::make_unique<bulwark::privacy_router::Router>(bus, o);
  });
}
