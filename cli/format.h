#pragma once
// How the CLI prints sandboxes: aligned tables for people, JSON for programs.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace bulwark::cli {

// Columns padded to their widest cell, separated by two spaces.
std::string table(const std::vector<std::vector<std::string>>& rows);
// NAME, ID, PHASE, EXIT, DRIVER, REASON for each sandbox in the gateway's JSON.
std::string sandbox_table(const std::vector<nlohmann::json>& sandboxes);
// LAYER, BINARY, TARGET, REQUEST, RULE, VERSION, REASON for each denial log line.
std::string denial_table(const std::vector<nlohmann::json>& lines);
// Splits "K=V" into its halves; throws CliError(kUsage) naming the flag when there is no '='.
std::pair<std::string, std::string> key_value(const std::string& flag, const std::string& kv);

}  // namespace bulwark::cli
