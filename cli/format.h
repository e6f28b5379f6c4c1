#pragma once
// How the CLI prints sandboxes: aligned tables for people, JSON for programs.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace YAML {
class Emitter;
}

namespace bulwark::cli {

// Columns padded to their widest cell, separated by two spaces.
std::string table(const std::vector<std::vector<std::string>>& rows);
// NAME, ID, PHASE, EXIT, DRIVER, REASON for each sandbox in the gateway's JSON.
std::string sandbox_table(const std::vector<nlohmann::json>& sandboxes);
// LAYER, BINARY, TARGET, REQUEST, RULE, VERSION, REASON for each denial log line.
std::string denial_table(const std::vector<nlohmann::json>& lines);
// `bulwark status`: the gateway line (URL, version, uptime, NATS), SERVICE/LIVE/VERSION/UPTIME/
// INSTANCE (or why not live), DRIVER/KIND/CAPACITY/FREE/STATE/VERSION, and the non-zero sandbox
// counts by phase, from GET /v1/status.
std::string status_table(const nlohmann::json& status, const std::string& gateway_url);
// 3d4h, 2h5m, 4m2s, 12s, 0.3s: milliseconds as people read an uptime.
std::string human_duration(int64_t ms);
// Any JSON as block YAML (-o yaml).
std::string to_yaml(const nlohmann::json& j);
// The same, into an emitter that is already in a document.
void emit_yaml(YAML::Emitter& e, const nlohmann::json& j);
// Splits "K=V" into its halves; throws CliError(kUsage) naming the flag when there is no '='.
std::pair<std::string, std::string> key_value(const std::string& flag, const std::string& kv);

}  // namespace bulwark::cli
