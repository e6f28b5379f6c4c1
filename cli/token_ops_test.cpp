#include "cli/token_ops.h"

#include <doctest/doctest.h>

using namespace bulwark::cli;
using nlohmann::json;

namespace {
int usage_code(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const CliError& e) {
    return e.exit_code;
  }
  return -1;
}
}  // namespace

TEST_CASE("--expires: seconds, minutes, hours, days; anything else is a usage error") {
  CHECK(parse_duration("3600") == 3600);
  CHECK(parse_duration("90s") == 90);
  CHECK(parse_duration("30m") == 1800);
  CHECK(parse_duration("24h") == 86400);
  CHECK(parse_duration("7d") == 7 * 86400);
  for (const char* bad : {"", "0", "0h", "h", "-5m", "5w", "1.5h", "24hh", "9999999999999d"})
    CHECK_MESSAGE(usage_code([&] { parse_duration(bad); }) == kUsage, bad);
}

TEST_CASE("the create body") {
  CHECK(token_create_body("ci-main", "ci", "") == json{{"name", "ci-main"}, {"scope", "ci"}});
  CHECK(token_create_body("ci-main", "ci", "24h") == json{{"name", "ci-main"}, {"scope", "ci"}, {"expires_in_s", 86400}});
}

TEST_CASE("which token the CLI sends: the flag (or BULWARK_TOKEN), else the file's first line") {
  int reads = 0;
  auto reader = [&](const std::string& path) {
    ++reads;
    return path == "empty" ? std::string("\n  \n") : std::string("  bwk_file  \nsecond line\n");
  };
  CHECK(choose_token(" bwk_flag\n", "f", reader) == "bwk_flag");
  CHECK(reads == 0);  // the flag wins without touching the file
  CHECK(choose_token("", "f", reader) == "bwk_file");
  CHECK(choose_token("", "", reader) == "");
  CHECK(usage_code([&] { choose_token("", "empty", reader); }) == kUsage);
}

TEST_CASE("token table: state from revoked_at and expires_at, never a secret column") {
  std::vector<json> ts = {
      {{"token_id", "aaaaaaaaaaaa"}, {"name", "root"}, {"scope", "admin"}, {"created_at", "2026-01-02T03:04:05Z"},
       {"created_by", "bootstrap"}},
      {{"token_id", "bbbbbbbbbbbb"}, {"name", "old"}, {"scope", "ci"}, {"created_at", "2026-01-02T03:04:05Z"},
       {"expires_at", "2026-01-03T00:00:00Z"}},
      {{"token_id", "cccccccccccc"}, {"name", "gone"}, {"scope", "read-only"}, {"created_at", "2026-01-02T03:04:05Z"},
       {"revoked_at", "2026-01-02T04:00:00Z"}, {"last_used_at", "2026-01-02T03:59:00Z"}}};
  std::string t = token_table(ts, 1767398400000LL + 1000);  // 2026-01-03T00:00:01Z
  CHECK(t.find("TOKEN ID") == 0);
  CHECK(t.find("aaaaaaaaaaaa  root") != std::string::npos);
  CHECK(t.find("live") != std::string::npos);
  CHECK(t.find("expired") != std::string::npos);
  CHECK(t.find("revoked") != std::string::npos);
  CHECK(t.find("2026-01-02 03:59") != std::string::npos);
  CHECK(t.find("never") != std::string::npos);
  // Before the expiry the same token is live.
  std::string earlier = token_table({ts[1]}, 1767398400000LL - 1000);
  CHECK(earlier.find("live") != std::string::npos);
}
