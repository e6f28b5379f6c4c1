#include "cli/gateway_ops.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include "cli/client.h"
#include "cli/format.h"
#include "shared/process.h"
#include "shared/util.h"

namespace bulwark::cli {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<std::string> ssh_argv(const SshTarget& t) {
  std::vector<std::string> a = {"ssh", "-p", std::to_string(t.port)};
  if (!t.key.empty()) a.insert(a.end(), {"-i", t.key, "-o", "IdentitiesOnly=yes"});
  a.insert(a.end(), {"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=10"});
  if (!t.known_hosts.empty()) a.insert(a.end(), {"-o", "UserKnownHostsFile=" + t.known_hosts});
  a.push_back(t.target);
  return a;
}

std::vector<std::string> scp_argv(const SshTarget& t) {
  std::vector<std::string> a = {"scp", "-q", "-P", std::to_string(t.port)};
  if (!t.key.empty()) a.insert(a.end(), {"-i", t.key, "-o", "IdentitiesOnly=yes"});
  a.insert(a.end(), {"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=10"});
  if (!t.known_hosts.empty()) a.insert(a.end(), {"-o", "UserKnownHostsFile=" + t.known_hosts});
  return a;
}

std::string ssh_host(const std::string& target) {
  std::string host = target.substr(target.find('@') == std::string::npos ? 0 : target.find('@') + 1);
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
  return host;
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,@") == std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

namespace {
// "~/x" and "~" mean the remote home, which is where an ssh command starts anyway.
std::string remote_path(const std::string& dir) {
  if (dir == "~") return ".";
  if (dir.rfind("~/", 0) == 0) return dir.substr(2);
  return dir;
}
}  // namespace

std::string remote_unpack_command(const RemoteUp& r, const std::string& bundle_name) {
  std::string d = shell_quote(remote_path(r.dir));
  return "set -e; cd " + d + " && tar -xzf " + shell_quote(bundle_name) + " && rm -f " + shell_quote(bundle_name);
}

std::string remote_up_command(const RemoteUp& r) {
  // scripts/up's output goes to stderr: stdout stays for what the CLI prints.
  std::string cmd = "set -e; cd " + shell_quote(remote_path(r.dir)) +
                    " && BULWARK_HOME=\"$PWD/state\" BULWARK_BIN_DIR=\"$PWD/bin\"" +
                    (r.tls_san.empty() ? "" : " BULWARK_TLS_SAN=" + shell_quote(r.tls_san)) + " BULWARK_HTTP_PORT=" + std::to_string(r.http_port) +
                    " BULWARK_NATS_PORT=" + std::to_string(r.nats_port) + " BULWARK_HTTP_ADDR=" + shell_quote(r.listen) +
                    " scripts/up";
  if (!r.drivers.empty()) cmd += " --drivers " + shell_quote(r.drivers);
  return cmd + " 1>&2";
}

std::string remote_down_command(const std::string& dir) {
  return "set -e; cd " + shell_quote(remote_path(dir)) + " && BULWARK_HOME=\"$PWD/state\" scripts/down 1>&2";
}

std::vector<std::string> root_candidates(const std::string& exe, const std::string& bulwark_root_env) {
  std::vector<std::string> out;
  if (!bulwark_root_env.empty()) out.push_back(bulwark_root_env);
  fs::path bin = fs::path(exe).parent_path();
  out.push_back(bin.parent_path().string());                               // bundle: ROOT/bin/bulwark
  out.push_back((bin.parent_path() / "share" / "bulwark").string());      // install prefix
  out.push_back(bin.parent_path().parent_path().string());                 // source tree: ROOT/build/bin
#ifdef BULWARK_SOURCE_ROOT
  out.push_back(BULWARK_SOURCE_ROOT);  // a build directory outside the source tree
#endif
  return out;
}

void add_gateway_commands(CLI::App& gw, GatewayCommands& c) {
  c.add = gw.add_subcommand("add", "register a gateway in the CLI's config (~/.config/bulwark/config.yaml)");
  c.add->add_option("url", c.url, "its URL, http(s)://host:port")->required();
  c.add->add_option("--name", c.name, "a name for it (default: the URL's host)");
  auto* tf = c.add->add_option("--token-file", c.token_file, "file with its API token (first line), must be mode 0600");
  c.add->add_flag("--token-stdin", c.token_stdin, "read its API token from stdin; stored 0600 in the config directory")->excludes(tf);
  c.add->add_option("--ca-cert", c.ca_cert, "PEM CA certificate that signs its TLS certificate");
  c.add->add_option("--client-cert", c.client_cert, "PEM client certificate for mutual TLS");
  c.add->add_option("--client-key", c.client_key, "PEM client key for mutual TLS, must be mode 0600");
  c.add->add_flag("--no-select", c.no_select, "keep the currently selected gateway selected");
  c.add->footer("Examples:\n  echo bwk_... | bulwark gateway add https://gw.example.com:8080 --name prod --token-stdin\n"
                "  bulwark gateway add http://10.0.0.5:8080 --token-file ~/prod.token");

  c.select = gw.add_subcommand("select", "make a config gateway the one commands talk to");
  c.select->add_option("name", c.name, "its name (`bulwark gateway list`)")->required();
  c.select->footer("Example: bulwark gateway select prod");

  c.list = gw.add_subcommand("list", "the config's gateways; * marks the selected one")->alias("ls");
  c.list->footer("Example: bulwark gateway list -o json");

  c.info = gw.add_subcommand("info", "a gateway's URL, version and drivers (GET /v1/status)");
  c.info->add_option("name", c.name, "config gateway (default: the one commands talk to)");
  c.info->footer("Examples:\n  bulwark gateway info\n  bulwark gateway info prod -o json");

  c.remove = gw.add_subcommand("remove", "forget a config gateway (and the token the config stored for it)")->alias("rm");
  c.remove->add_option("name", c.name, "its name")->required();
  c.remove->footer("Example: bulwark gateway remove prod");

  auto ssh_flags = [&c](CLI::App* s) {
    s->add_option("--remote", c.remote, "user@host: on that Linux host, over ssh");
    s->add_option("--ssh-port", c.ssh_port, "ssh port of --remote")->check(CLI::Range(1, 65535))->capture_default_str();
    s->add_option("--ssh-key", c.ssh_key, "ssh private key for --remote (default: ssh's)");
    s->add_option("--remote-dir", c.remote_dir, "directory on --remote for the bundle and its state (relative: to the home)")
        ->capture_default_str();
  };
  c.start = gw.add_subcommand("start", "start the embedded gateway (nats-server, the services, drivers), here or --remote; "
                                        "registers and selects it");
  c.start->add_option("--name", c.name, "config name (default: local, or the remote host)");
  c.start->add_option("--drivers", c.drivers, "compute drivers (default: detected on that host; see `bulwark gateway drivers`)");
  c.start->add_option("--home", c.home, "local state and logs (default: BULWARK_HOME, else .bulwark beside scripts/)");
  c.start->add_option("--http-port", c.http_port, "the gateway's port")->envname("BULWARK_HTTP_PORT")->capture_default_str();
  c.start->add_option("--nats-port", c.nats_port, "NATS's port")->envname("BULWARK_NATS_PORT")->capture_default_str();
  c.start->add_option("--listen", c.listen, "with --remote: the address the gateway listens on there")->capture_default_str();
  c.start->add_option("--wait", c.wait_s, "seconds to wait for GET /v1/status to answer")->check(CLI::PositiveNumber)->capture_default_str();
  c.start->add_flag("--no-select", c.no_select, "register it without selecting it");
  ssh_flags(c.start);
  c.start->footer("Examples:\n  bulwark gateway start\n  bulwark gateway start --drivers docker --http-port 9080\n"
                  "  bulwark gateway start --remote root@build-box --ssh-key ~/.ssh/id_ed25519 --name build-box");

  c.stop = gw.add_subcommand("stop", "stop a gateway `gateway start` started (scripts/down there)");
  c.stop->add_option("name", c.name, "config gateway (default: the selected one)");
  c.stop->add_option("--home", c.home, "the local state directory instead of a config gateway");
  ssh_flags(c.stop);
  c.stop->footer("Examples:\n  bulwark gateway stop\n  bulwark gateway stop build-box\n  bulwark gateway stop --remote root@build-box --remote-dir .bulwark");
}

bool gateway_command_chosen(const GatewayCommands& c) {
  for (CLI::App* a : {c.add, c.select, c.list, c.info, c.remove, c.start, c.stop})
    if (a && a->parsed()) return true;
  return false;
}

namespace {

std::string env(const char* n) {
  const char* v = std::getenv(n);
  return v ? v : "";
}

std::string absolute(const std::string& p) { return p.empty() ? p : fs::absolute(p).lexically_normal().string(); }

std::string self_exe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw CliError{kFailure, "cannot find this program's path (/proc/self/exe): " + ec.message()};
  return p.string();
}

std::string find_root(const std::string& script) {
  for (const auto& r : root_candidates(self_exe(), env("BULWARK_ROOT")))
    if (::access((r + "/scripts/" + script).c_str(), X_OK) == 0) return r;
  throw CliError{kUsage, "cannot find scripts/" + script + " near " + self_exe() +
                             ": set BULWARK_ROOT to the Bulwark checkout or bundle that has scripts/"};
}

struct Ran {
  int code;
  std::string out;
};

// Runs argv; its stderr goes to ours (progress, ssh's messages), its stdout is returned.
Ran run(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env = {}) {
  std::optional<std::vector<std::string>> e;
  if (!extra_env.empty()) {
    e.emplace();
    for (char** p = environ; *p; ++p) e->push_back(*p);
    e->insert(e->end(), extra_env.begin(), extra_env.end());
  }
  Process p = Process::spawn({.argv = argv, .env = e, .pipe_stdout = true});
  Ran r{0, {}};
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(p.stdout_fd(), buf, sizeof buf);
    if (n > 0) r.out.append(buf, static_cast<size_t>(n));
    else if (n == 0 || errno != EINTR) break;
  }
  r.code = p.wait();
  return r;
}

void must(const Ran& r, const std::string& what, const std::string& hint) {
  if (r.code != 0) throw CliError{kFailure, what + " failed (exit " + std::to_string(r.code) + ")" + (hint.empty() ? "" : ": " + hint)};
}

Ran ssh(const SshTarget& t, const std::string& command) {
  auto a = ssh_argv(t);
  a.push_back(command);
  return run(a);
}

json status_of(const Target& t, int timeout_ms = 500) {
  GatewayClient gw(t.url, load_token(t), {t.ca_cert, t.client_cert, t.client_key});
  gw.set_read_timeout(std::chrono::seconds(30));
  return gw.get("/v1/status?timeout_ms=" + std::to_string(timeout_ms));
}

// Polls GET /v1/status until it answers (the token works, services report) or wait_s passes.
json wait_status(const Target& t, double wait_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(wait_s * 1000));
  for (;;) {
    try {
      return status_of(t);
    } catch (const CliError& e) {
      if (e.exit_code != kUnreachable || std::chrono::steady_clock::now() >= deadline) throw;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

// proto JSON writes 64-bit integers as strings and leaves zeros out.
int64_t number(const json& j, const char* key) {
  if (!j.contains(key)) return 0;
  const json& v = j[key];
  if (v.is_number()) return v.get<int64_t>();
  if (v.is_string()) return std::strtoll(v.get<std::string>().c_str(), nullptr, 10);
  return 0;
}

std::string config_directory() {
  std::string d = config_dir([](const char* n) { return env(n); });
  if (d.empty()) throw CliError{kUsage, "no config directory: set HOME, XDG_CONFIG_HOME or BULWARK_CONFIG_DIR"};
  return d;
}

void register_started(Config& cfg, const GatewayEntry& e, bool select, std::ostream& out) {
  cfg.upsert(e);
  if (select) cfg.selected = e.name;
  save_config(config_directory(), cfg);
  out << "gateway " << e.name << " is up at " << e.url << (select ? " (selected)" : "") << "\n";
}

// Waits (--wait) until the started gateway answers through what its config entry holds, then
// records the entry, selected unless --no-select.
void wait_and_register(const GatewayCommands& c, const GatewayEntry& e, std::ostream& out) {
  Target t;
  t.url = e.url;
  t.token_file = e.token_file;
  t.ca_cert = e.ca_cert;
  t.client_cert = e.client_cert;
  t.client_key = e.client_key;
  t.token_from_config = true;
  wait_status(t, c.wait_s);
  Config cfg = load_config(config_directory());
  register_started(cfg, e, !c.no_select, out);
}

int start_local(const GatewayCommands& c, std::ostream& out, std::ostream& err) {
  std::string root = find_root("up");
  std::string home = absolute(!c.home.empty() ? c.home : !env("BULWARK_HOME").empty() ? env("BULWARK_HOME") : root + "/.bulwark");
  std::string bin_dir = fs::path(self_exe()).parent_path().string();
  std::vector<std::string> argv = {"bash", "-c", "exec \"$0\" \"$@\" 1>&2", root + "/scripts/up"};
  if (!c.drivers.empty()) argv.insert(argv.end(), {"--drivers", c.drivers});
  err << "starting the gateway with " << root << "/scripts/up (state and logs in " << home << ")\n";
  must(run(argv, {"BULWARK_HOME=" + home, "BULWARK_BIN_DIR=" + bin_dir, "BULWARK_HTTP_PORT=" + std::to_string(c.http_port),
                  "BULWARK_NATS_PORT=" + std::to_string(c.nats_port)}),
       "scripts/up", "see " + home + "/logs/");
  GatewayEntry e;
  e.name = c.name.empty() ? "local" : c.name;
  e.url = "http://127.0.0.1:" + std::to_string(c.http_port);
  e.token_file = home + "/admin.token";
  e.home = home;
  // scripts/up serves HTTPS with client certificates unless BULWARK_TLS=off; its PKI is <home>/pki.
  if (env("BULWARK_TLS") != "off" && fs::exists(home + "/pki/ca.crt")) {
    e.url = "https://127.0.0.1:" + std::to_string(c.http_port);
    e.ca_cert = home + "/pki/ca.crt";
    e.client_cert = home + "/pki/client-cli-admin.crt";
    e.client_key = home + "/pki/client-cli-admin.key";
  }
  wait_and_register(c, e, out);
  return kOk;
}

void check_remote_dir(const std::string& d) {
  if (d.empty() || d.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./~") != std::string::npos ||
      d == "/" || d == "~")
    throw CliError{kUsage, "--remote-dir '" + d + "': use a directory of its own, letters, digits and _-./~ only"};
}

SshTarget ssh_target(const std::string& remote, int port, const std::string& key) {
  SshTarget t;
  t.target = remote;
  t.port = port;
  t.key = key.empty() ? "" : absolute(key);
  // Host keys the CLI has seen, in its own file: accepted on first use, checked afterwards.
  std::string dir = config_directory();
  t.known_hosts = dir + "/known_hosts";
  // Created 0600 here (with the directory 0700): ssh appends to it and keeps the mode.
  if (::access(t.known_hosts.c_str(), F_OK) != 0) write_private_file(dir, "known_hosts", "");
  return t;
}

int start_remote(const GatewayCommands& c, std::ostream& out, std::ostream& err) {
  check_remote_dir(c.remote_dir);
  SshTarget t = ssh_target(c.remote, c.ssh_port, c.ssh_key);
  RemoteUp r;
  r.dir = c.remote_dir;
  r.http_port = c.http_port;
  r.nats_port = c.nats_port;
  r.drivers = c.drivers;
  r.listen = c.listen;
  r.tls_san = ssh_host(c.remote);
  std::string root = find_root("make-bundle");
  TempDir tmp("bulwark-bundle");
  std::string bundle = tmp.file("bulwark-bundle.tar.gz");
  err << "making the bundle (binaries and scripts) from " << fs::path(self_exe()).parent_path().string() << "\n";
  must(run({root + "/scripts/make-bundle", fs::path(self_exe()).parent_path().string(), bundle}), "scripts/make-bundle", "");
  err << "copying it to " << c.remote << ":" << c.remote_dir << "\n";
  must(ssh(t, "mkdir -p " + shell_quote(remote_path(c.remote_dir))), "ssh " + c.remote,
       "check that `ssh -p " + std::to_string(c.ssh_port) + " " + c.remote + "` logs in without a password");
  auto scp = scp_argv(t);
  scp.insert(scp.end(), {bundle, c.remote + ":" + remote_path(c.remote_dir) + "/bulwark-bundle.tar.gz"});
  must(run(scp), "scp of the bundle", "");
  must(ssh(t, remote_unpack_command(r, "bulwark-bundle.tar.gz")), "unpacking the bundle on " + c.remote, "");
  err << "starting it there (scripts/up)\n";
  must(ssh(t, remote_up_command(r)), "scripts/up on " + c.remote, "its logs are in " + c.remote_dir + "/state/logs/ there");
  Ran token = ssh(t, "cat " + shell_quote(remote_path(c.remote_dir)) + "/state/admin.token");
  must(token, "reading the admin token on " + c.remote, "");
  GatewayEntry e;
  e.name = c.name.empty() ? default_gateway_name("ssh://" + ssh_host(c.remote)) : c.name;
  e.token_file = write_private_file(config_directory(), e.name + ".token", token.out);
  // scripts/up there serves HTTPS with client certificates (its PKI in state/pki, the host's name
  // among the server certificate's names): the CA and the CLI's certificate come home, 0600.
  auto fetch = [&](const std::string& file) {
    Ran f = ssh(t, "cat " + shell_quote(remote_path(c.remote_dir)) + "/state/pki/" + file);
    must(f, "reading state/pki/" + file + " on " + c.remote, "");
    return write_private_file(config_directory(), e.name + "-" + file, f.out);
  };
  e.url = "https://" + ssh_host(c.remote) + ":" + std::to_string(c.http_port);
  e.ca_cert = fetch("ca.crt");
  e.client_cert = fetch("client-cli-admin.crt");
  e.client_key = fetch("client-cli-admin.key");
  e.ssh = c.remote;
  e.ssh_port = std::to_string(c.ssh_port);
  e.ssh_key = t.key;
  e.remote_dir = c.remote_dir;
  wait_and_register(c, e, out);
  return kOk;
}

int stop(const GatewayCommands& c, std::ostream& out, std::ostream& err) {
  std::string remote = c.remote, remote_dir = c.remote_dir, key = c.ssh_key, home = c.home;
  int port = c.ssh_port;
  std::string what;
  if (remote.empty() && home.empty()) {
    Config cfg = load_config(config_directory());
    std::string name = c.name.empty() ? cfg.selected : c.name;
    const GatewayEntry* e = name.empty() ? nullptr : cfg.find(name);
    if (!e) throw CliError{kUsage, "gateway stop: name a config gateway, or give --home or --remote (no gateway is selected)"};
    if (e->home.empty() && e->ssh.empty())
      throw CliError{kUsage, "gateway " + name + " was added, not started by `bulwark gateway start`: stop it where it runs"};
    home = e->home;
    remote = e->ssh;
    remote_dir = e->remote_dir;
    key = e->ssh_key;
    if (!e->ssh_port.empty()) port = std::stoi(e->ssh_port);
    what = "gateway " + name;
  }
  if (!remote.empty()) {
    check_remote_dir(remote_dir);
    must(ssh(ssh_target(remote, port, key), remote_down_command(remote_dir)), "scripts/down on " + remote, "");
    out << (what.empty() ? "the gateway on " + remote : what) << " stopped\n";
    return kOk;
  }
  std::string root = find_root("down");
  err << "stopping with " << root << "/scripts/down (state in " << home << ")\n";
  must(run({"bash", "-c", "exec \"$0\" \"$@\" 1>&2", root + "/scripts/down"}, {"BULWARK_HOME=" + absolute(home)}), "scripts/down", "");
  out << (what.empty() ? "the gateway of " + home : what) << " stopped\n";
  return kOk;
}

}  // namespace

int run_gateway_command(const GatewayCommands& c, const Target& given, const std::string& output, std::ostream& out,
                        std::ostream& err) {
  try {
    if (c.start->parsed()) return c.remote.empty() ? start_local(c, out, err) : start_remote(c, out, err);
    if (c.stop->parsed()) return stop(c, out, err);
    std::string dir = config_directory();
    Config cfg = load_config(dir);
    if (c.add->parsed()) {
      GatewayEntry e;
      e.url = c.url;
      while (!e.url.empty() && e.url.back() == '/') e.url.pop_back();
      e.name = c.name.empty() ? default_gateway_name(e.url) : c.name;
      e.ca_cert = absolute(c.ca_cert);
      e.client_cert = absolute(c.client_cert);
      e.client_key = absolute(c.client_key);
      if (!e.client_key.empty()) read_private_file(e.client_key);  // refuses a key others can read
      check_tls_files(e.url, TlsFiles{e.ca_cert, e.client_cert, e.client_key});  // readable, parseable, matching
      cfg.upsert(e);  // validates name and URL before anything is written
      if (c.token_stdin) {
        std::string tok;
        std::getline(std::cin, tok);
        while (!tok.empty() && (tok.back() == '\r' || tok.back() == ' ')) tok.pop_back();
        if (tok.empty()) throw CliError{kUsage, "--token-stdin: stdin had no token (echo bwk_... | bulwark gateway add ...)"};
        e.token_file = write_private_file(dir, e.name + ".token", tok + "\n");
      } else if (!c.token_file.empty()) {
        e.token_file = absolute(c.token_file);
        read_private_file(e.token_file);
      }
      cfg.upsert(e);
      bool select = !c.no_select;
      if (select) cfg.selected = e.name;
      save_config(dir, cfg);
      out << "gateway " << e.name << " added: " << e.url << (select ? " (selected)" : "") << "\n";
      return kOk;
    }
    if (c.select->parsed()) {
      cfg.select(c.name);
      save_config(dir, cfg);
      out << "gateway " << c.name << " selected: " << cfg.find(c.name)->url << "\n";
      return kOk;
    }
    if (c.remove->parsed()) {
      cfg.remove(c.name);
      save_config(dir, cfg);
      std::error_code ec;
      fs::remove(dir + "/" + c.name + ".token", ec);  // only the token the config stored itself
      out << "gateway " << c.name << " removed\n";
      return kOk;
    }
    if (c.list->parsed()) {
      if (output != "table") {
        json j = {{"selected", cfg.selected}, {"gateways", json::array()}};
        for (const auto& g : cfg.gateways) {
          json e = {{"name", g.name}, {"url", g.url}, {"selected", g.name == cfg.selected}};
          if (!g.token_file.empty()) e["token_file"] = g.token_file;
          if (!g.token.empty()) e["token"] = "(in config.yaml)";
          if (!g.ssh.empty()) e["ssh"] = g.ssh;
          if (!g.home.empty()) e["home"] = g.home;
          j["gateways"].push_back(e);
        }
        out << (output == "json" ? j.dump(2) + "\n" : to_yaml(j));
        return kOk;
      }
      std::vector<std::vector<std::string>> rows = {{"", "NAME", "URL", "TOKEN", "STARTED"}};
      for (const auto& g : cfg.gateways)
        rows.push_back({g.name == cfg.selected ? "*" : "", g.name, g.url,
                        !g.token.empty() ? "in config.yaml" : !g.token_file.empty() ? g.token_file : "-",
                        !g.ssh.empty() ? "ssh " + g.ssh + ":" + g.remote_dir : !g.home.empty() ? "here, " + g.home : "-"});
      out << table(rows);
      if (cfg.gateways.empty()) err << "no gateways yet: bulwark gateway add URL, or bulwark gateway start\n";
      return kOk;
    }
    if (c.info->parsed()) {
      Target t = c.name.empty() ? resolve_target(given, cfg) : resolve_target([&] {
        Target n;
        n.url = c.name;
        return n;
      }(), cfg);
      json s = status_of(t);
      if (output != "table") {
        json j = {{"name", t.entry}, {"url", t.url}, {"version", s.value("version", "")}, {"drivers", s.value("drivers", json::array())}};
        out << (output == "json" ? j.dump(2) + "\n" : to_yaml(j));
        return kOk;
      }
      out << "name     " << (t.entry.empty() ? "-" : t.entry) << "\n"
          << "url      " << t.url << "\n"
          << "version  " << s.value("version", "?") << "\n"
          << "uptime   " << human_duration(number(s, "uptime_ms")) << "\n"
          << "nats     " << (s.value("nats_connected", false) ? "connected" : "disconnected") << "\n";
      std::vector<std::vector<std::string>> rows = {{"DRIVER", "KIND", "CAPACITY", "FREE"}};
      for (const auto& d : s.value("drivers", json::array()))
        rows.push_back({d.value("driver_id", ""), d.value("kind", ""), std::to_string(number(d, "capacity")),
                        std::to_string(number(d, "free_slots"))});
      out << "drivers  " << (rows.size() == 1 ? "none heard\n" : "\n" + table(rows));
      return kOk;
    }
  } catch (const CliError& e) {
    err << "bulwark: " << e.message << "\n";
    return e.exit_code;
  } catch (const std::exception& e) {
    err << "bulwark: " << e.what() << "\n";
    return kFailure;
  }
  return kUsage;
}

}  // namespace bulwark::cli
