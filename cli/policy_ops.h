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

// `bulwark policy pending NAME`: the gateway's proposals (GET /v1/policies/{name}/pending) as a
// table: id, hits, binary, endpoint, network_policies key, status, last reason.
std::string proposal_table(const std::vector<nlohmann::json>& proposals);
// `bulwark policy approve NAME ID`: the line printed for the answer of .../approve.
std::string approval_line(const nlohmann::json& answer);

}  // namespace bulwark::cli
