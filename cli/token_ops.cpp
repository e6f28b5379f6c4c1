#include "cli/token_ops.h"

#include <chrono>

#include "cli/format.h"

namespace bulwark::cli {

using nlohmann::json;

int64_t parse_duration(const std::string& text) {
  auto bad = [&] {
    return CliError{kUsage, "--expires: '" + text + "' is not a duration like 3600, 90s, 30m, 24h or 7d"};
  };
  if (text.empty() || text.size() > 12) throw bad();
  size_t digits = text.find_first_not_of("0123456789");
  if (digits == 0) throw bad();
  std::string unit = digits == std::string::npos ? "s" : text.substr(digits);
  int64_t mult = unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : unit == "d" ? 86400 : 0;
  if (mult == 0) throw bad();
  int64_t n = std::stoll(text.substr(0, digits));
  if (n <= 0) throw bad();
  return n * mult;
}

json token_create_body(const std::string& name, const std::string& scope, const std::string& expires) {
  json body = {{"name", name}, {"scope", scope}};
  if (!expires.empty()) body["expires_in_s"] = parse_duration(expires);
  return body;
}

namespace {
// RFC 3339 as the gateway sends timestamps, to milliseconds since the epoch; 0 when absent or odd.
int64_t millis_of(const std::string& ts) {
  std::tm tm{};
  if (ts.size() < 19 || !strptime(ts.substr(0, 19).c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}
std::string minute_of(const std::string& ts) { return ts.size() >= 16 ? ts.substr(0, 10) + " " + ts.substr(11, 5) : "-"; }
}  // namespace

std::string token_table(const std::vector<json>& tokens, int64_t now_ms) {
  std::vector<std::vector<std::string>> rows = {{"TOKEN ID", "NAME", "SCOPE", "STATE", "CREATED", "EXPIRES", "LAST USED", "CREATED BY"}};
  for (const auto& t : tokens) {
    std::string expires = t.value("expires_at", "");
    std::string state = !t.value("revoked_at", "").empty()                           ? "revoked"
                        : !expires.empty() && millis_of(expires) <= now_ms           ? "expired"
                                                                                     : "live";
    rows.push_back({t.value("token_id", ""), t.value("name", ""), t.value("scope", ""), state, minute_of(t.value("created_at", "")),
                    expires.empty() ? "never" : minute_of(expires), minute_of(t.value("last_used_at", "")),
                    t.value("created_by", "")});
  }
  return table(rows);
}

std::string choose_token(const std::string& flag, const std::string& token_file,
                         const std::function<std::string(const std::string&)>& read_file) {
  auto trim = [](std::string s) {
    size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return std::string();
    return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
  };
  if (!trim(flag).empty()) return trim(flag);
  if (token_file.empty()) return "";
  std::string text = read_file(token_file);
  std::string first = trim(text.substr(0, text.find('\n')));
  if (first.empty()) throw CliError{kUsage, "--token-file " + token_file + ": the file holds no token"};
  return first;
}

void add_token_commands(CLI::App& app, TokenCommands& t) {
  auto* token = app.add_subcommand("token", "create, list and revoke API tokens (admin scope)");
  token->require_subcommand(1);
  token->fallthrough();
  t.create = token->add_subcommand("create", "create an API token; prints it ONCE (the gateway keeps only its hash)");
  t.create->add_option("--name", t.name, "what it is for: 1-64 letters, digits, '.', '_', '-'")->required();
  t.create->add_option("--scope", t.scope, "admin, operator (sandboxes, policies, providers), ci (its own sandboxes), read-only")
      ->required()
      ->check(CLI::IsMember({"admin", "operator", "ci", "read-only"}));
  t.create->add_option("--expires", t.expires, "lifetime: 3600, 90s, 30m, 24h, 7d (default: never)");
  t.create->footer("Example: export BULWARK_TOKEN=$(bulwark token create --name ci-main --scope ci --expires 24h)");
  t.list = token->add_subcommand("list", "list API tokens (never their secrets)")->alias("ls");
  t.revoke = token->add_subcommand("revoke", "revoke an API token: refused from the next request on")->alias("rm");
  t.revoke->add_option("token_id", t.token_id, "the TOKEN ID `token list` shows")->required();
}

bool run_token_command(const TokenCommands& t, GatewayClient& gw, const std::string& output, std::ostream& out,
                       std::ostream& err) {
  auto print = [&](const json& j) {
    if (output == "yaml") out << to_yaml(j);
    else out << j.dump(2) << "\n";
  };
  int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (t.create && *t.create) {
    json r = gw.post("/v1/tokens", token_create_body(t.name, t.scope, t.expires));
    if (output == "table") {
      // The token alone on stdout, so $(bulwark token create ...) captures exactly it.
      out << r.value("token", "") << "\n";
      err << "token " << r.value("token_id", "") << " (" << r.value("name", "") << ", scope " << r.value("scope", "")
          << "): this is the only time it is shown; store it now (the gateway keeps only its hash)\n";
    } else {
      print(r);
    }
    return true;
  }
  if (t.list && *t.list) {
    json r = gw.get("/v1/tokens");
    if (output == "table") out << token_table(r.value("tokens", json::array()).get<std::vector<json>>(), now_ms);
    else print(r);
    return true;
  }
  if (t.revoke && *t.revoke) {
    json r = gw.del("/v1/tokens/" + httplib::detail::encode_query_param(t.token_id));
    if (output == "table") out << "token " << r.value("token_id", t.token_id) << " (" << r.value("name", "") << ") revoked\n";
    else print(r);
    return true;
  }
  return false;
}

}  // namespace bulwark::cli
