#pragma once
// How a sandbox becomes a Docker container (the Engine API's POST /containers/create body), and
// the small parsers the driver's flags need. Pure: no socket.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bulwark/v1/sandbox.pb.h"

namespace bulwark::docker {

// Labels that mark what Bulwark owns, so a restarted driver finds its containers again. The same
// names as driver-podman's: a container says what it is whatever engine runs it.
inline constexpr const char* kManagedLabel = "io.bulwark.managed";
inline constexpr const char* kSandboxLabel = "io.bulwark.sandbox_id";
inline constexpr const char* kDriverLabel = "io.bulwark.driver_id";
inline constexpr const char* kNameLabel = "io.bulwark.name";
// Where the supervisor bundle (binary, its libraries and loader) appears inside the container.
inline constexpr const char* kBundleMount = "/.bulwark";
// The network mode that shares the host's network namespace instead of a bridge.
inline constexpr const char* kHostNetwork = "host";

struct ContainerConfig {
  std::string driver_id;
  std::string nats_url;             // as reachable from inside the container
  std::string bundle_dir;           // host directory with bin/, lib/, ld.so (scripts/bundle-supervisor)
  std::string network = "bulwark";  // a bridge network, or "host"
  int64_t pids_limit = 4096;        // processes in the whole container (the fork-bomb ceiling)
  int64_t memory_bytes = 0;         // 0: no limit
  int64_t nano_cpus = 0;            // CPU time in billionths of a CPU; 0: no limit
  int gpus = 0;                     // NVIDIA GPUs to request (DeviceRequests); 0: none
};

// What the supervisor needs on a network (a bridge, or host) on top of nothing: every other
// capability is dropped (CapDrop ALL). The reason for each is in container_spec.cpp.
std::vector<std::string> capabilities(const std::string& network);

std::string container_name(const std::string& sandbox_id);  // "bulwark-<sandbox_id>"
nlohmann::json container_body(const std::string& sandbox_id, const v1::SandboxSpec& spec, const ContainerConfig& c);
// POST /networks/create body for the managed bridge network.
nlohmann::json network_body(const std::string& name);

// "localhost/bulwark/base:latest" -> {"localhost/bulwark/base", "latest"}; no tag -> "latest".
// A ':' before the last '/' is a registry port, not a tag.
std::pair<std::string, std::string> split_image(const std::string& image);

// "1.5" CPUs -> 1500000000 nano-CPUs; "" or "0" -> 0. Throws Error on anything else.
int64_t parse_cpus(const std::string& text, const std::string& field);

// The NATS URL a sandbox uses: each server of `url` (a comma-separated list) whose host is a
// loopback or wildcard address is replaced by `gateway` (the bridge's address on the host), since
// a container's own loopback is not the host's. `rewritten` lists the "host:port" it produced.
struct SandboxNatsUrl {
  std::string url;
  std::vector<std::string> rewritten;
};
SandboxNatsUrl sandbox_nats_url(const std::string& url, const std::string& gateway);

}  // namespace bulwark::docker
