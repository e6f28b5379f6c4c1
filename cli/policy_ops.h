#pragma once
// `bulwark policy update` flags turned into policy-service operations (PolicyUpdateRequest's
// `operations`, as REST JSON). Pure, so every flag form is unit-tested.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace bulwark::cli {

struct UpdateFlags {
  std::string network_policy;                 // --network-policy KEY ("" = found by host:port / derived from the host)
  std::vector<std::string> binaries;          // --binary PATH: for a new network policy entry
  std::vector<std::string> add_endpoint;      // host:port[:access]
  std::vector<std::string> add_allow;         // host:port:METHOD:PATH
  std::vector<std::string> add_deny;          // host:port:METHOD:PATH
  std::vector<std::string> remove_endpoint;   // host[:port]
  std::vector<std::string> remove_allow;      // host:port:METHOD:PATH
  std::vector<std::string> remove_deny;       // host:port:METHOD:PATH
};

// Throws CliError(kUsage) naming the flag and the expected form when a value is malformed.
nlohmann::json update_operations(const UpdateFlags& f);

}  // namespace bulwark::cli
