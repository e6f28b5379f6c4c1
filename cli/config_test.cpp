#include "cli/config.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <fstream>
#include <map>

#include "cli/client.h"
#include "shared/util.h"

using namespace bulwark::cli;

namespace {
Getenv env_of(std::map<std::string, std::string> m) {
  return [m](const char* k) {
    auto it = m.find(k);
    return it == m.end() ? std::string() : it->second;
  };
}
int code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const CliError& e) {
    return e.exit_code;
  }
  return 0;
}
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const CliError& e) {
    return e.message;
  }
  return "";
}
Target given(const std::string& url, const std::string& token_file) {
  Target t;
  t.url = url;
  t.token_file = token_file;
  return t;
}
mode_t mode_of(const std::string& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 0777;
}
}  // namespace

TEST_CASE("config_dir: BULWARK_CONFIG_DIR, then XDG_CONFIG_HOME/bulwark, then ~/.config/bulwark") {
  CHECK(config_dir(env_of({{"BULWARK_CONFIG_DIR", "/c"}, {"XDG_CONFIG_HOME", "/x"}, {"HOME", "/h"}})) == "/c");
  CHECK(config_dir(env_of({{"XDG_CONFIG_HOME", "/x"}, {"HOME", "/h"}})) == "/x/bulwark");
  CHECK(config_dir(env_of({{"HOME", "/h"}})) == "/h/.config/bulwark");
  CHECK(config_dir(env_of({})).empty());
  CHECK(load_config("").gateways.empty());
}

TEST_CASE("parse_config and dump_config round-trip; unknown keys are refused with line and column") {
  Config c;
  c.upsert({"local", "http://127.0.0.1:8080", "", "/root/.bulwark/admin.token", "", "", ""});
  c.upsert({"prod", "https://gw.example.com:8443", "bwk_x", "", "/ca.pem", "/c.pem", "/k.pem"});
  c.select("prod");
  Config back = parse_config(dump_config(c), "config.yaml");
  CHECK(back.selected == "prod");
  REQUIRE(back.gateways.size() == 2);
  CHECK(back.gateways[0].token_file == "/root/.bulwark/admin.token");
  CHECK(back.gateways[1].client_key == "/k.pem");
  CHECK(back.gateways[1].token == "bwk_x");

  CHECK(parse_config("", "f").gateways.empty());
  std::string m = message_of([] { parse_config("gateways:\n  - name: a\n    url: http://h:1\n    tokn: x\n", "f.yaml"); });
  CHECK_MESSAGE(m.find("f.yaml:4:5: gateways[0].tokn: unknown key") != std::string::npos, m);
  m = message_of([] { parse_config("colour: red\n", "f.yaml"); });
  CHECK_MESSAGE(m.find("f.yaml:1:1: colour: unknown key") != std::string::npos, m);
  CHECK(code_of([] { parse_config("selected: nope\ngateways: []\n", "f"); }) == kUsage);
  CHECK(code_of([] { parse_config("gateways:\n  - name: a\n", "f"); }) == kUsage);  // no url
  CHECK(code_of([] { parse_config("gateways:\n  - {name: a, url: 'http://h:1'}\n  - {name: a, url: 'http://h:2'}\n", "f"); }) ==
        kUsage);
  CHECK(code_of([] { parse_config("gateways: [\n", "f"); }) == kUsage);
}

TEST_CASE("Config: upsert validates names and URLs, select and remove") {
  Config c;
  CHECK(code_of([&] { c.upsert({"Bad Name", "http://h:1", "", "", "", "", ""}); }) == kUsage);
  CHECK(code_of([&] { c.upsert({"ok", "ftp://h", "", "", "", "", ""}); }) == kUsage);
  c.upsert({"a", "http://h:1", "", "", "", "", ""});
  c.upsert({"a", "http://h:2", "", "", "", "", ""});  // replaces
  REQUIRE(c.gateways.size() == 1);
  CHECK(c.gateways[0].url == "http://h:2");
  CHECK(code_of([&] { c.select("b"); }) == kNotFound);
  CHECK(message_of([&] { c.select("b"); }).find("known: a") != std::string::npos);
  c.select("a");
  c.remove("a");
  CHECK(c.selected.empty());
  CHECK(c.gateways.empty());
  CHECK(code_of([&] { c.remove("a"); }) == kNotFound);
}

TEST_CASE("valid_gateway_url and default_gateway_name") {
  CHECK(valid_gateway_url("http://127.0.0.1:8080"));
  CHECK(valid_gateway_url("https://gw.example.com"));
  CHECK(valid_gateway_url("https://gw.example.com/"));
  CHECK_FALSE(valid_gateway_url("gw.example.com"));
  CHECK_FALSE(valid_gateway_url("http://"));
  CHECK_FALSE(valid_gateway_url("http://h:99999"));
  CHECK_FALSE(valid_gateway_url("http://h:"));
  CHECK_FALSE(valid_gateway_url("http://user@h:1"));
  CHECK_FALSE(valid_gateway_url("http://h:1/v1"));
  CHECK(default_gateway_name("https://GW.example.com:8443") == "gw.example.com");
  CHECK(default_gateway_name("http://127.0.0.1:8080") == "127.0.0.1");
}

TEST_CASE("resolve_target: flags and env > selected config gateway > the default; credentials stay with their URL") {
  Config c;
  c.upsert({"local", "http://127.0.0.1:8080", "", "/t/local.token", "", "", ""});
  c.upsert({"prod", "https://gw.example.com", "bwk_prod", "", "/ca.pem", "", ""});

  Target none = resolve_target({}, Config{});
  CHECK(none.url == "http://127.0.0.1:8080");
  CHECK(none.entry.empty());

  c.select("prod");
  Target t = resolve_target({}, c);
  CHECK(t.url == "https://gw.example.com");
  CHECK(t.token == "bwk_prod");
  CHECK(t.ca_cert == "/ca.pem");
  CHECK(t.entry == "prod");

  // A flag's token wins over the entry's.
  t = resolve_target(given("", "/mine"), c);
  CHECK(t.token.empty());
  CHECK(t.token_file == "/mine");

  // Another URL: none of the selected gateway's credentials go there.
  t = resolve_target(given("http://10.0.0.9:8080", ""), c);
  CHECK(t.url == "http://10.0.0.9:8080");
  CHECK(t.token.empty());
  CHECK(t.ca_cert.empty());
  CHECK(t.entry.empty());

  // The URL of a config gateway, or its name, brings that gateway's credentials.
  t = resolve_target(given("http://127.0.0.1:8080", ""), c);
  CHECK(t.token_file == "/t/local.token");
  t = resolve_target(given("local", ""), c);
  CHECK(t.url == "http://127.0.0.1:8080");
  CHECK(t.entry == "local");
  CHECK(code_of([&] { resolve_target(given("nosuch", ""), c); }) == kUsage);
}

TEST_CASE("save_config writes 0700/0600 and fixes modes; load refuses a config others can read") {
  bulwark::TempDir tmp;
  std::string dir = tmp.file("cfg/bulwark");
  Config c;
  c.upsert({"a", "http://h:1", "bwk_secret", "", "", "", ""});
  save_config(dir, c);
  CHECK(mode_of(dir) == 0700);
  CHECK(mode_of(dir + "/config.yaml") == 0600);
  CHECK(load_config(dir).gateways.at(0).token == "bwk_secret");

  ::chmod(dir.c_str(), 0755);
  ::chmod((dir + "/config.yaml").c_str(), 0644);
  std::string m = message_of([&] { load_config(dir); });
  CHECK_MESSAGE(m.find("chmod 600 " + dir + "/config.yaml") != std::string::npos, m);
  save_config(dir, c);  // fixes both
  CHECK(mode_of(dir) == 0700);
  CHECK(mode_of(dir + "/config.yaml") == 0600);
  CHECK(load_config(dir).gateways.size() == 1);

  CHECK(load_config(tmp.file("none")).gateways.empty());
  std::string tok = write_private_file(dir, "a.token", "bwk_t\n");
  CHECK(read_private_file(tok) == "bwk_t\n");
  ::chmod(tok.c_str(), 0640);
  CHECK(code_of([&] { read_private_file(tok); }) == kUsage);
}

TEST_CASE("private_mode_problem says which chmod to run") {
  CHECK(private_mode_problem("/f", 0100600).empty());
  CHECK(private_mode_problem("/f", 0100400).empty());
  CHECK(private_mode_problem("/f", 0100644).find("chmod 600 /f") != std::string::npos);
  CHECK_FALSE(private_mode_problem("/f", 0100604).empty());
}
