#pragma once
// The CLI's gateway configuration: named gateways (URL and how to authenticate to it) and the one
// selected, kept in <config dir>/config.yaml. The config dir is $BULWARK_CONFIG_DIR, else
// $XDG_CONFIG_HOME/bulwark, else ~/.config/bulwark; it is 0700 and every file in it 0600, because
// the config may hold tokens. Parsing, editing and choosing the gateway to talk to are pure; only
// load_config/save_config/read_private_file touch the disk.
#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace bulwark::cli {

struct GatewayEntry {
  std::string name;
  std::string url;
  std::string token;        // inline token (discouraged: prefer token_file)
  std::string token_file;   // file whose first line is the token
  std::string ca_cert, client_cert, client_key;  // TLS (PEM files)
  // Set when `gateway start` started it, so `gateway stop NAME` knows where: the state directory
  // of a local one (scripts/up's BULWARK_HOME), or the SSH target and directory of a remote one.
  std::string home, ssh, ssh_port, ssh_key, remote_dir;
};

struct Config {
  std::string selected;  // name of the selected gateway, "" = none
  std::vector<GatewayEntry> gateways;

  const GatewayEntry* find(const std::string& name) const;
  // Adds or replaces (same name) an entry. Throws CliError(kUsage) for a bad name or URL.
  void upsert(const GatewayEntry& e);
  // Throws CliError(kNotFound) naming the known gateways when there is no such one.
  void select(const std::string& name);
  void remove(const std::string& name);  // clears the selection when it was selected
};

using Getenv = std::function<std::string(const char*)>;

// Where config.yaml lives (see above); "" when none of the variables is set (load_config("") is empty).
std::string config_dir(const Getenv& env);

// Strict: unknown keys and wrong types are refused naming `where` and the key, so a typo never
// silently drops a setting. Empty text is an empty config.
Config parse_config(const std::string& text, const std::string& where);
std::string dump_config(const Config& c);

// "gw.example.com" for https://gw.example.com:8443, used when `gateway add` gets no --name.
std::string default_gateway_name(const std::string& url);
// Whether url is http(s)://host[:port] with nothing the CLI could not use.
bool valid_gateway_url(const std::string& url);

// A credentials file must be private: "" when mode (st_mode) allows only its owner, else what to run.
std::string private_mode_problem(const std::string& path, mode_t mode);

// What the CLI talks to, once flags, the environment and the config are combined.
struct Target {
  std::string url, token, token_file, ca_cert, client_cert, client_key;
  std::string entry;  // the config gateway it came from, "" = none
  bool token_from_config = false;  // token/token_file are the entry's (its file must be private)
};

// The token to send: token, else the first line of token_file (a config one must be 0600); "" = none.
std::string load_token(const Target& t);

// Precedence: flags > environment > the selected config gateway > http://127.0.0.1:8080.
// `given` holds what flags or environment variables set (CLI11 merges the two), empty = not set.
// given.url may also be a config gateway's name. A config entry's credentials are used only for
// its own URL, so a token never travels to a gateway it was not made for.
Target resolve_target(const Target& given, const Config& c);

// Disk. load_config returns an empty Config when the file does not exist; refuses (CliError
// kUsage, with the chmod to run) a config file that others may read.
Config load_config(const std::string& dir);
// Creates dir 0700 (fixing the mode of an existing one) and writes config.yaml 0600 atomically.
void save_config(const std::string& dir, const Config& c);
// Writes a private file (0600) in dir, creating dir 0700; returns its path.
std::string write_private_file(const std::string& dir, const std::string& name, const std::string& text);
// The text of a credentials file, refused when group or world may read it.
std::string read_private_file(const std::string& path);

}  // namespace bulwark::cli
