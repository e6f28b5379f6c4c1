#pragma once
// How a sandbox becomes a Podman container (libpod SpecGenerator JSON). Pure: no socket.
#include <nlohmann/json.hpp>
#include <string>

#include "bulwark/v1/sandbox.pb.h"

namespace bulwark::podman {

// Labels that mark what Bulwark owns, so a restarted driver finds its containers again.
inline constexpr const char* kManagedLabel = "io.bulwark.managed";
inline constexpr const char* kSandboxLabel = "io.bulwark.sandbox_id";
inline constexpr const char* kDriverLabel = "io.bulwark.driver_id";
inline constexpr const char* kNameLabel = "io.bulwark.name";
// Where the supervisor bundle (binary, its libraries and loader) appears inside the container.
inline constexpr const char* kBundleMount = "/.bulwark";

struct ContainerConfig {
  std::string driver_id;
  std::string nats_url;        // as reachable from inside the container
  std::string bundle_dir;      // host directory with bin/, lib/, ld.so (scripts/bundle-supervisor)
  int64_t pids_limit = 4096;   // processes in the whole container (the fork-bomb ceiling)
};

std::string container_name(const std::string& sandbox_id);  // "bulwark-<sandbox_id>"
nlohmann::json container_spec(const std::string& sandbox_id, const v1::SandboxSpec& spec, const ContainerConfig& c);

}  // namespace bulwark::podman
