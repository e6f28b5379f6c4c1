#pragma once
// `bulwark token create|list|revoke` (API tokens, docs/security.md) and where the CLI's own token
// comes from: --token (or BULWARK_TOKEN), else the file --token-file (or BULWARK_TOKEN_FILE) names.
// The parsing and printing are pure and unit-tested; run_token_command does the REST calls.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "cli/client.h"

namespace bulwark::cli {

// "90" or "90s", "30m", "24h", "7d" as seconds (> 0). Throws CliError(kUsage) naming --expires.
int64_t parse_duration(const std::string& text);
// POST /v1/tokens. expires: "" = never.
nlohmann::json token_create_body(const std::string& name, const std::string& scope, const std::string& expires);
// TOKEN ID, NAME, SCOPE, STATE (live, revoked, expired), CREATED, EXPIRES, LAST USED, CREATED BY.
// now_ms decides "expired".
std::string token_table(const std::vector<nlohmann::json>& tokens, int64_t now_ms);
// The token the CLI sends: flag (from --token or BULWARK_TOKEN) when set, else the first line of
// the file named by token_file (read with read_file), else "". Surrounding whitespace is dropped.
// Throws CliError(kUsage) naming --token-file when the file holds no token.
std::string choose_token(const std::string& flag, const std::string& token_file,
                         const std::function<std::string(const std::string&)>& read_file);

// The subcommands and their flags, registered on `app` by add_token_commands.
struct TokenCommands {
  CLI::App* create = nullptr;
  CLI::App* list = nullptr;
  CLI::App* revoke = nullptr;
  std::string name, scope, expires, token_id;
};
void add_token_commands(CLI::App& app, TokenCommands& t);
// Runs the parsed token subcommand; false when none was parsed. output: table, json or yaml.
bool run_token_command(const TokenCommands& t, GatewayClient& gw, const std::string& output, std::ostream& out,
                       std::ostream& err);

}  // namespace bulwark::cli
