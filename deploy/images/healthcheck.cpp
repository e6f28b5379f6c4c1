// bulwark-healthcheck: the health check of Bulwark's container images (compose.yaml, the Helm
// chart). The runtime images hold no shell or curl, so this one binary checks both kinds of health:
//   bulwark-healthcheck http URL       GET URL answers 2xx (the gateway's /healthz, NATS's monitor)
//   bulwark-healthcheck nats SERVICE   a bulwark-SERVICE answers bulwark.SERVICE.health on NATS
//                                      (BULWARK_NATS_URL, else nats://127.0.0.1:4222)
// Exit 0 when healthy, 1 with the reason on stderr otherwise, 2 for a bad command line.
#include <httplib.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

#include "bulwark/v1/common.pb.h"
#include "shared/bus.h"
#include "shared/subjects.h"

namespace {

int check_http(const std::string& url) {
  auto scheme_end = url.find("://");
  auto path_start = url.find('/', scheme_end == std::string::npos ? 0 : scheme_end + 3);
  std::string base = url.substr(0, path_start), path = path_start == std::string::npos ? "/" : url.substr(path_start);
  httplib::Client c(base);
  c.set_tcp_nodelay(true);
  c.set_connection_timeout(2);
  c.set_read_timeout(2);
  auto r = c.Get(path);
  if (!r) {
    std::cerr << "GET " << url << ": " << httplib::to_string(r.error()) << "\n";
    return 1;
  }
  if (r->status < 200 || r->status > 299) {
    std::cerr << "GET " << url << ": " << r->status << " " << r->body << "\n";
    return 1;
  }
  return 0;
}

int check_nats(const std::string& service) {
  const char* env = std::getenv("BULWARK_NATS_URL");
  std::string url = env && *env ? env : "nats://127.0.0.1:4222";
  // The container's own NATS identity and CA (compose sets them for each service).
  auto env_or_empty = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v ? v : "");
  };
  bulwark::Bus::Options o{url, "bulwark-healthcheck", std::chrono::milliseconds(2000)};
  o.creds = env_or_empty("BULWARK_NATS_CREDS");
  o.ca_file = env_or_empty("BULWARK_NATS_CA");
  auto bus = bulwark::Bus::connect(o);
  auto r = bus->request<bulwark::v1::HealthReply>(bulwark::subjects::health(service), bulwark::v1::HealthRequest(),
                                                  std::chrono::milliseconds(2000));
  if (r.status() != "ok") {
    std::cerr << service << " (" << r.instance_id() << ") reports " << r.status() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string kind = argc == 3 ? argv[1] : "";
  if (kind != "http" && kind != "nats") {
    std::cerr << "usage: bulwark-healthcheck http URL | nats SERVICE\n";
    return 2;
  }
  try {
    return kind == "http" ? check_http(argv[2]) : check_nats(argv[2]);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
