#pragma once
// What a Docker container's state means for Bulwark, and what changed since the last look. Pure:
// the driver feeds it the Engine API's JSON and does the I/O the answer asks for.
#include <nlohmann/json.hpp>
#include <map>
#include <string>
#include <vector>

#include "bulwark/v1/driver.pb.h"

namespace bulwark::docker {

// An entry of GET /containers/json. Docker's list carries no exit code: exited() is set, and the
// code comes from an inspect (see Changes::exited).
v1::WorkloadStatus status_from_list(const nlohmann::json& listed);
// GET /containers/{id}/json: running, exited and the exit code.
v1::WorkloadStatus status_from_inspect(const nlohmann::json& inspected);
// Why an exited container ended, when docker knows more than its code ("" otherwise): the memory
// limit killed it, or the runtime could not start the entrypoint.
std::string exit_reason(const nlohmann::json& inspected);

// One reconcile pass: the states last reported (`before`) against what docker lists now, both by
// sandbox id.
struct Changes {
  std::vector<std::string> running;  // report WORKLOAD_RUNNING
  std::vector<std::string> exited;   // inspect for the exit code, then report WORKLOAD_EXITED
  // Known before, not listed now. A list taken while docker changes a container can miss it: only
  // a failed inspect makes one gone.
  std::vector<std::string> missing;
};
Changes diff(const std::map<std::string, v1::WorkloadStatus>& before,
             const std::map<std::string, v1::WorkloadStatus>& now);

}  // namespace bulwark::docker
