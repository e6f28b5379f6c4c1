#pragma once
// `bulwark gateway add|select|list|info|remove|start|stop`: the named gateways of the CLI's config
// (cli/config.h), and starting the embedded default with scripts/up, here or on another Linux host
// over SSH. Building argv and shell text is pure (tested in gateway_ops_test.cpp); running ssh,
// scp and the scripts is in run_gateway_command.
#include <CLI/CLI.hpp>

#include <iosfwd>
#include <string>
#include <vector>

#include "cli/config.h"

namespace bulwark::cli {

struct SshTarget {
  std::string target;       // user@host (or host)
  int port = 22;
  std::string key;          // -i FILE; "" = ssh's default keys
  std::string known_hosts;  // UserKnownHostsFile; "" = ssh's default
};

// ssh/scp argv up to (not including) the remote command or the files. BatchMode: never prompt,
// fail instead, so a script or test cannot hang on a password question.
std::vector<std::string> ssh_argv(const SshTarget& t);
std::vector<std::string> scp_argv(const SshTarget& t);
// The host part of user@host ("[::1]" for an IPv6 address), for the gateway's URL.
std::string ssh_host(const std::string& target);
// A word for sh, single-quoted when it needs to be.
std::string shell_quote(const std::string& s);

// What runs on the remote host, in its shell: unpack the bundle under dir, then scripts/up with
// the bundle's binaries, ports and drivers; its state goes to dir/state.
struct RemoteUp {
  std::string dir;      // absolute, or relative to the remote user's home ("~/.bulwark" -> ".bulwark")
  int http_port = 8080;
  int nats_port = 4222;
  std::string drivers;  // "" = detected on the remote host
  std::string listen = "0.0.0.0";  // the gateway's --http-addr there
  std::string tls_san;             // a name for the gateway's server certificate (--tls-san): the host dialled
};
std::string remote_unpack_command(const RemoteUp& r, const std::string& bundle_name);
std::string remote_up_command(const RemoteUp& r);
std::string remote_down_command(const std::string& dir);

// Where scripts/up is, for a bulwark binary at exe: $BULWARK_ROOT, the bundle's or install
// prefix's layout (bin/bulwark beside scripts/ or share/bulwark/scripts/), or a source tree's
// build directory (build/bin/bulwark). Candidates in order; the caller takes the first that exists.
std::vector<std::string> root_candidates(const std::string& exe, const std::string& bulwark_root_env);

struct GatewayCommands {
  CLI::App *add = nullptr, *select = nullptr, *list = nullptr, *info = nullptr, *remove = nullptr, *start = nullptr,
           *stop = nullptr;
  std::string url, name, token_file, ca_cert, client_cert, client_key;
  bool token_stdin = false, no_select = false;
  // start / stop
  std::string drivers, home, remote, ssh_key, remote_dir = ".bulwark", listen = "0.0.0.0";
  int ssh_port = 22, http_port = 8080, nats_port = 4222;
  double wait_s = 120;
};

void add_gateway_commands(CLI::App& gateway, GatewayCommands& c);
bool gateway_command_chosen(const GatewayCommands& c);
// given: the --gateway/--token... flags and environment, for `gateway info` without a name.
int run_gateway_command(const GatewayCommands& c, const Target& given, const std::string& output, std::ostream& out,
                        std::ostream& err);

}  // namespace bulwark::cli
