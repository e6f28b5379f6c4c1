#pragma once
// What a Docker container's state means for Bulwark. Pure: the driver feeds it the Engine API's
// JSON.
#include <nlohmann/json.hpp>
#include <map>
#include <string>
#include <vector>

#include "bulwark/v1/driver.pb.h"

namespace bulwark::docker {

// An entry of GET /containers/json. Docker's list carries no exit code: exited() is set, and the
// code comes from an inspect.
v1::WorkloadStatus status_from_list(const nlohmann::json& listed);
// GET /containers/{id}/json: running, exited and the exit code.
v1::WorkloadStatus status_from_inspect(const nlohmann::json& inspected);
// Why an exited container ended, when docker knows more than its code ("" otherwise): the memory
// limit killed it, or the runtime could not start the entrypoint.
std::string exit_reason(const nlohmann::json& inspected);

}  // namespace bulwark::docker
