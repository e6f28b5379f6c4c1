// bulwark: the command line for a Bulwark gateway. Every command is one or a few REST calls.
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <thread>

#include "cli/agent_presets.h"
#include "cli/client.h"
#include "cli/completion.h"
#include "cli/config.h"
#include "cli/examples.h"
#include "cli/gateway_ops.h"
#include "cli/watch.h"
#include "cli/driver_select.h"
#include "cli/format.h"
#include "cli/inference_ops.h"
#include "cli/policy_ops.h"
#include "cli/provider_ops.h"
#include "cli/connect_ops.h"
#include "cli/exec_ops.h"
#include "cli/sandbox_ops.h"
#include "cli/stream_ops.h"
#include "cli/token_ops.h"
#include "shared/providers.h"
#include "shared/policy.h"
#include "shared/util.h"

using bulwark::cli::CliError;
using bulwark::cli::GatewayClient;
using nlohmann::json;
namespace cli = bulwark::cli;

namespace {

struct Globals {
  std::string gateway;  // "" = the selected config gateway, else http://127.0.0.1:8080 (cli/config.h)
  std::string output = "table";
  std::string token, token_file;  // API token (docs/security.md)
  std::string ca_cert, client_cert, client_key;  // TLS for an https:// gateway (PEM files; cli/client.h TlsFiles)
};

bool settled(const std::string& phase) {
  return phase == "READY" || phase == "EXITED" || phase == "FAILED" || phase == "DELETED" || phase == "STOPPED";
}

void print(const Globals& g, const json& sandbox) {
  if (g.output == "json") std::cout << sandbox.dump(2) << "\n";
  else if (g.output == "yaml") std::cout << cli::to_yaml(sandbox);
  else std::cout << cli::sandbox_table({sandbox});
}

std::string path_of(const std::string& ref) { return "/v1/sandboxes/" + httplib::detail::encode_query_param(ref); }

// Polls until the sandbox reaches a phase in `until`, or the timeout passes; `progress` sees each poll.
json wait_for(GatewayClient& gw, const std::string& id, double timeout_s, const std::function<bool(const std::string&)>& until,
              const std::function<void(const json&)>& progress = nullptr) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  for (;;) {
    json s = gw.get(path_of(id));
    if (progress) progress(s);
    if (until(s.value("phase", ""))) return s;
    if (std::chrono::steady_clock::now() >= deadline)
      throw CliError{cli::kTimedOut, "sandbox " + s.value("name", id) + " is still " + s.value("phase", "?") + " after " +
                                         std::to_string(static_cast<int>(timeout_s)) + " s; see `bulwark sandbox get " +
                                         s.value("name", id) + "`"};
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// The text of a file a flag names (--policy, --file); unreadable or empty is a usage error.
std::string read_text(const std::string& flag, const std::string& path, const std::string& empty_hint) {
  auto fail = [&](const std::string& why) { return CliError{cli::kUsage, flag + " " + path + ": " + why}; };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw fail(std::string("cannot read it: ") + std::strerror(errno));
  std::string text;
  struct stat st {};
  bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  char buf[65536];
  ssize_t n = 0;
  while (regular && ((n = ::read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)))
    if (n > 0) text.append(buf, static_cast<size_t>(n));
  int err = errno;
  ::close(fd);
  if (!regular) throw fail("cannot read it: not a regular file");
  if (n < 0) throw fail(std::string("cannot read it: ") + std::strerror(err));
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) throw fail("the file is empty (" + empty_hint + ")");
  return text;
}

// The text of a --policy file, sent as is: the gateway validates it with the supervisor's parser.
// Sent empty, it would read as "no policy" and the defaults would apply instead.
std::string read_policy_text(const std::string& path) {
  return read_text("--policy", path, "a policy starts with `version: 1`");
}

std::string provider_path(const std::string& name) { return "/v1/providers/" + httplib::detail::encode_query_param(name); }
std::string inference_path(const std::string& sandbox) {
  return "/v1/inference" + (sandbox.empty() ? std::string() : "?sandbox_id=" + httplib::detail::encode_query_param(sandbox));
}

void print_providers(const Globals& g, const std::vector<json>& ps, bool one) {
  if (g.output == "json") std::cout << (one ? ps.at(0) : json{{"providers", ps}}).dump(2) << "\n";
  else if (g.output == "yaml") std::cout << cli::to_yaml(one ? ps.at(0) : json{{"providers", ps}});
  else std::cout << cli::provider_table(ps);
}

// Names only: the values stay out of terminals and CI logs.
void report_taken(const std::vector<std::string>& taken) {
  for (const auto& v : taken) std::cerr << "--from-env: took " << v << " from the environment\n";
}

// `policy validate FILE`: offline, with the parser the supervisor enforces with.
int validate_policy(const std::string& file) {
  try {
    bulwark::policy::load_policy_file(file);
  } catch (const bulwark::policy::PolicyInvalid& e) {
    for (const auto& p : e.problems) std::cerr << p.to_string() << "\n";
    return cli::kFailure;
  } catch (const bulwark::Error& e) {  // unreadable: the message names the file and the reason
    std::cerr << "bulwark: " << e.what() << "\n";
    return cli::kUsage;
  }
  std::cout << file << ": valid\n";
  return cli::kOk;
}

// The directory of this executable: presets may be installed next to it.
std::string exe_dir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.parent_path().string();
}

// Every provider, page by page (the gateway answers at most 1000 at a time).
std::vector<json> all_providers(GatewayClient& gw) {
  std::vector<json> out;
  std::string token;
  do {
    json r = gw.get("/v1/providers?limit=1000" + (token.empty() ? "" : "&page_token=" + httplib::detail::encode_query_param(token)));
    for (const auto& p : r.value("providers", json::array())) out.push_back(p);
    token = r.value("next_page_token", "");
  } while (!token.empty());
  return out;
}

void print_logs(const json& reply) {
  for (const auto& l : reply.value("lines", json::array())) {
    (l.value("stream", "") == "stderr" ? std::cerr : std::cout) << l.value("line", "") << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  // A TLS peer that hangs up (a refused client certificate) must be an error message, not a silent
  // SIGPIPE death: OpenSSL writes to the socket with plain write().
  ::signal(SIGPIPE, SIG_IGN);
  CLI::App app("bulwark: create and manage agent sandboxes through a Bulwark gateway");
  app.set_version_flag("--version", std::string(bulwark::kVersion));
  app.require_subcommand(1);
  app.fallthrough();  // global flags (-o, --gateway) may follow the subcommand
  Globals g;
  app.add_option("--gateway", g.gateway,
                 "gateway URL or config gateway name (default: the one `bulwark gateway select` chose, else http://127.0.0.1:8080)")
      ->envname("BULWARK_GATEWAY");
  app.add_option("--token", g.token, "API token (bwk_...) sent as Authorization: Bearer")->envname("BULWARK_TOKEN");
  app.add_option("--token-file", g.token_file, "file holding the API token (when --token and BULWARK_TOKEN are not set)")
      ->envname("BULWARK_TOKEN_FILE");
  app.add_option("--ca-cert", g.ca_cert, "https:// gateway: the CA that signed its certificate (the gateway's pki/ca.crt)")
      ->envname("BULWARK_CA_CERT");
  app.add_option("--client-cert", g.client_cert, "https:// gateway with mTLS: this client's certificate (pki/client-cli-admin.crt)")
      ->envname("BULWARK_CLIENT_CERT");
  app.add_option("--client-key", g.client_key, "https:// gateway with mTLS: the key of --client-cert (pki/client-cli-admin.key)")
      ->envname("BULWARK_CLIENT_KEY");
  app.add_option("-o,--output", g.output, "table, json, or yaml")->check(CLI::IsMember({"table", "json", "yaml"}))->capture_default_str();
  app.footer("Exit codes: 0 ok, 1 request failed or policy invalid, 2 usage, 3 not found (sandbox, provider, route table),\n"
             "4 gateway unreachable, 5 sandbox FAILED, 6 timed out, 7 not authenticated (401) or not allowed (403);\n"
             "sandbox create -- CMD in the foreground: CMD's own exit code once it ran.\nExample: bulwark sandbox create --name demo -- echo hi");

  auto* sandbox = app.add_subcommand("sandbox", "create, list, inspect and delete sandboxes")->alias("sb");
  sandbox->require_subcommand(1);
  sandbox->fallthrough();

  // create
  auto* create = sandbox->add_subcommand("create", "create a sandbox running CMD (default: sleep infinity)");
  std::string name, image, driver, policy_file;
  std::vector<std::string> command, envs, labels, sandbox_providers;
  bool no_wait = false;
  double timeout_s = 120;
  create->add_option("--name", name, "sandbox name (default: generated)");
  create->add_option("--image", image, "local image (default: the gateway's)");
  create->add_option("--driver", driver, "compute driver kind: podman, docker, kubernetes, vm")
      ->check(CLI::IsMember({"podman", "docker", "kubernetes", "vm"}));
  create->add_option("--policy", policy_file, "sandbox policy file (OpenShell YAML; see `bulwark policy validate`)");
  create->add_option("-e,--env", envs, "KEY=VALUE for the agent's environment (repeatable)");
  create->add_option("-l,--label", labels, "KEY=VALUE label (repeatable)");
  create->add_option("--provider", sandbox_providers,
                     "provider to attach (repeatable): github/generic ones become the agent's environment variables");
  double cpus = 0;
  std::string memory;
  uint32_t pids = 0, gpus = 0;
  bool tty = false, keep = false;
  std::vector<std::string> driver_labels;
  create->add_option("--cpus", cpus, "CPU limit, e.g. 0.5 or 2 (default: the driver's)")->check(CLI::Range(0.0, 4096.0));
  create->add_option("--memory", memory, "memory limit, e.g. 512m or 2g (default: the driver's)");
  create->add_option("--pids", pids, "processes at once (default: 4096)")->check(CLI::Range(1u, 4194304u));
  create->add_option("--gpu", gpus, "NVIDIA GPUs (a driver without GPU support refuses)")
      ->expected(0, 1)->default_str("1")->check(CLI::Range(0u, 64u));
  create->add_flag("-t,--tty", tty, "give the agent a pseudo-terminal");
  create->add_flag("--keep", keep, "keep the sandbox running after the agent ends (for exec and download)");
  create->add_option("--driver-label", driver_labels,
                     "K=V: place only on a driver started with --label K=V (repeatable: all must match)");
  bool detach = false;
  create->add_flag("--no-wait", no_wait, "return once accepted instead of waiting for READY");
  create->add_flag("-d,--detach", detach, "with a command: return at READY instead of waiting for it to end");
  create->add_option("--timeout", timeout_s, "seconds to wait for READY")->check(CLI::PositiveNumber)->capture_default_str();
  create->add_option("command", command, "the agent command, after --");
  std::string agent;
  create->add_option("--agent", agent,
                     "apply an agent preset (image, command, env, policy) and attach the providers it needs, "
                     "creating them from this environment (ANTHROPIC_API_KEY...); `--agent list` lists presets");
  create->footer("Example: bulwark sandbox create --name demo -- sh -c 'echo hello'\n"
                 "         ANTHROPIC_API_KEY=sk-... bulwark sandbox create --agent claude-code -- claude -p 'say hi'");

  auto* list = sandbox->add_subcommand("list", "list sandboxes, oldest first (every page, unless --limit or --page-token)")->alias("ls");
  cli::SandboxListFlags lf;
  list->add_flag("-a,--all", lf.all, "include deleted sandboxes");
  list->add_option("-l,--label", lf.labels, "only those with label KEY=VALUE (repeatable: all must match)");
  list->add_option("--phase", lf.phases, "only those in this phase (repeatable: any of them)")
      ->transform(CLI::IsMember({"PENDING", "SCHEDULED", "STARTING", "READY", "EXITED", "STOPPED", "STOPPING", "DELETED", "FAILED"},
                                CLI::ignore_case));
  list->add_option("--limit", lf.limit, "print at most N")->check(CLI::PositiveNumber);
  list->add_option("--page-token", lf.page_token, "fetch only the page that starts there (a next_page_token)");
  list->footer("Example: bulwark sandbox list --label team=ml --phase ready --limit 20");
  // --watch: redraw every 2 s on a terminal, else print what changed; until Ctrl-C (cli/watch.h).
  bool watch_flag = false;
  list->add_flag("-w,--watch", watch_flag, "keep watching: redraw every 2 s (on a terminal; else print changes) until Ctrl-C");

  std::string ref;
  auto* get = sandbox->add_subcommand("get", "show one sandbox");
  get->add_option("name", ref, "sandbox name or id")->required();
  get->add_flag("-w,--watch", watch_flag, "keep watching: redraw every 2 s (on a terminal; else print changes) until Ctrl-C");

  auto* del = sandbox->add_subcommand("delete", "delete a sandbox and its workload")->alias("rm");
  bool del_wait = false;
  del->add_option("name", ref, "sandbox name or id")->required();
  del->add_flag("--wait", del_wait, "wait until the workload is gone");

  auto* stop = sandbox->add_subcommand("stop", "stop a sandbox, keeping its workload and files for start");
  uint32_t grace_s = 10;
  stop->add_option("name", ref, "sandbox name or id")->required();
  stop->add_option("--grace", grace_s, "seconds between SIGTERM and SIGKILL")->check(CLI::Range(1u, 300u))->capture_default_str();
  stop->footer("Example: bulwark sandbox stop demo && bulwark sandbox start demo");
  auto* start = sandbox->add_subcommand("start", "start a STOPPED (or EXITED) sandbox again and wait for READY");
  start->add_option("name", ref, "sandbox name or id")->required();
  start->add_flag("--no-wait", no_wait, "return once the driver started it");
  start->add_option("--timeout", timeout_s, "seconds to wait for READY")->check(CLI::PositiveNumber)->capture_default_str();

  auto* logs = sandbox->add_subcommand("logs", "print the agent's output");
  int tail = 1000;
  logs->add_option("name", ref, "sandbox name or id")->required();
  logs->add_option("--tail", tail, "last N lines")->check(CLI::PositiveNumber)->capture_default_str();
  bool denials_only = false, inference_only = false;
  auto* denials_flag =
      logs->add_flag("--denials", denials_only, "only what the sandbox's policy refused (or allowed in audit mode), as a table");
  logs->add_flag("--inference", inference_only, "only its inference.local calls, as a table (model -> provider, status, bytes, latency)")
      ->excludes(denials_flag);
  std::string logs_since;
  bool logs_follow = false;
  logs->add_option("--since", logs_since, "only lines since a time (RFC 3339) or a duration back from now (5m, 1h30m)");
  logs->add_flag("-f,--follow", logs_follow, "keep printing new lines until the sandbox ends (or Ctrl-C)");
  // Phase changes and denials as they happen (GET /v1/events, Server-Sent Events).
  auto* events_cmd = sandbox->add_subcommand("events", "watch phase changes and denials, one line each, until Ctrl-C");
  events_cmd->add_option("name", ref, "sandbox name or id (default: every sandbox the token may see)");
  events_cmd->footer("Example: bulwark sandbox events demo -o json");

  // Into a running sandbox (docs/exec.md).
  auto* exec_cmd = sandbox->add_subcommand("exec", "run a command in a running sandbox; exits with its exit code");
  std::vector<std::string> exec_command, exec_env;
  std::string exec_workdir;
  int exec_timeout = 0;
  bool exec_no_stream = false, exec_stdin = false;
  exec_cmd->add_option("name", ref, "sandbox name or id")->required();
  exec_cmd->add_option("command", exec_command, "the command and its arguments, after --")->required();
  exec_cmd->add_option("-e,--env", exec_env, "NAME=value added to the agent's environment (repeatable)");
  exec_cmd->add_option("-w,--workdir", exec_workdir, "working directory inside the sandbox (default: the agent's)");
  exec_cmd->add_option("--timeout", exec_timeout, "seconds before the command is killed (default: the gateway's, 300)")
      ->check(CLI::PositiveNumber);
  exec_cmd->add_flag("-i,--stdin", exec_stdin, "send this process's stdin (read to its end first) to the command");
  exec_cmd->add_flag("--no-stream", exec_no_stream, "print the output once the command ended (default: as it arrives)");
  exec_cmd->footer("Example: bulwark sandbox exec demo -- sh -c 'ls -l /sandbox'");
  auto* upload = sandbox->add_subcommand("upload", "copy a local file or directory into a sandbox (as a tar)");
  std::string local_path, remote_path;
  upload->add_option("name", ref, "sandbox name or id")->required();
  upload->add_option("local", local_path, "local file or directory")->required();
  upload->add_option("remote", remote_path, "directory inside the sandbox it goes into (default: /sandbox)");
  upload->footer("Example: bulwark sandbox upload demo ./src /sandbox   (creates /sandbox/src)");
  auto* download = sandbox->add_subcommand("download", "copy a file or directory out of a sandbox");
  download->add_option("name", ref, "sandbox name or id")->required();
  download->add_option("remote", remote_path, "absolute path inside the sandbox")->required();
  download->add_option("local", local_path, "local directory it goes into (default: .)");
  download->footer("Example: bulwark sandbox download demo /sandbox/out ./results   (creates ./results/out)");
  auto* connect = sandbox->add_subcommand("connect", "an interactive shell in a running sandbox (a terminal; exit ends it)");
  std::vector<std::string> connect_command;
  int connect_port = -1;
  connect->add_option("name", ref, "sandbox name or id")->required();
  connect->add_option("command", connect_command, "what to run instead of sh, after --");
  connect->add_option("--connect-port", connect_port, "the gateway's connect listener port (default: the gateway's port + 1)")
      ->check(CLI::Range(1, 65535));
  connect->footer("Example: bulwark sandbox connect demo");

  cli::TokenCommands tokens;
  cli::add_token_commands(app, tokens);

  auto* gateway_cmd = app.add_subcommand("gateway", "the gateway and what it runs on")->alias("gw");
  gateway_cmd->require_subcommand(1);
  gateway_cmd->fallthrough();
  auto* gw_drivers = gateway_cmd->add_subcommand(
      "drivers", "print the compute drivers a local gateway starts: --drivers, else BULWARK_DRIVERS, else detected "
                 "(kubernetes, then podman, then docker; never vm)");
  std::string drivers_flag;
  gw_drivers->add_option("--drivers", drivers_flag, "comma-separated: docker, podman, kubernetes, vm");
  gw_drivers->footer("Example: scripts/up starts $(bulwark gateway drivers); BULWARK_DRIVERS=docker,vm overrides");
  cli::GatewayCommands gwc;  // add, select, list, info, remove, start, stop (cli/gateway_ops.h)
  cli::add_gateway_commands(*gateway_cmd, gwc);

  auto* agent_cmd = app.add_subcommand("agent", "agent presets for `sandbox create --agent` (docs/agents.md)");
  agent_cmd->require_subcommand(1);
  agent_cmd->fallthrough();
  auto* agent_list = agent_cmd->add_subcommand("list", "list the agent presets and where they were found")->alias("ls");
  agent_cmd->footer("Examples:\n  bulwark agent list\n  bulwark sandbox create --agent codex -- codex exec 'add a README'");
  agent_list->footer("Example: bulwark agent list -o yaml");

  auto* health = app.add_subcommand("health", "check that the gateway answers");
  auto* status = app.add_subcommand("status", "the gateway, its services and drivers, and sandboxes by phase");
  int status_timeout_ms = 500;
  status->add_option("--timeout-ms", status_timeout_ms, "how long the gateway waits for each service's health answer")
      ->check(CLI::Range(1, 5000))
      ->capture_default_str();
  status->footer("Example: bulwark status -o yaml");
  // `bulwark logs S` = `bulwark sandbox logs S`, as OpenShell groups it.
  auto* top_logs = app.add_subcommand("logs", "print a sandbox's output (the same as `sandbox logs`)");
  top_logs->add_option("name", ref, "sandbox name or id")->required();
  top_logs->add_option("--tail", tail, "last N lines")->check(CLI::PositiveNumber)->capture_default_str();
  auto* top_denials = top_logs->add_flag("--denials", denials_only, "only what the sandbox's policy refused, as a table");
  top_logs->add_flag("--inference", inference_only, "only its inference.local calls, as a table")->excludes(top_denials);
  top_logs->add_option("--since", logs_since, "only lines since a time (RFC 3339) or a duration back from now (5m, 1h30m)");
  top_logs->add_flag("-f,--follow", logs_follow, "keep printing new lines until the sandbox ends (or Ctrl-C)");
  auto* top_events = app.add_subcommand("events", "watch phase changes and denials (the same as `sandbox events`)");
  top_events->add_option("name", ref, "sandbox name or id (default: every sandbox the token may see)");
  top_events->footer("Example: bulwark events            (every sandbox; Ctrl-C ends it)");
  auto* completion_cmd = app.add_subcommand("completion", "print a shell completion script (bash, zsh or fish)");
  std::string completion_shell;
  completion_cmd->add_option("shell", completion_shell, "bash, zsh or fish")->required()->check(CLI::IsMember({"bash", "zsh", "fish"}));

  auto* policy = app.add_subcommand("policy", "check policy files; read and change a running sandbox's policy");
  policy->require_subcommand(1);
  policy->fallthrough();
  std::string validate_file;
  auto* validate = policy->add_subcommand("validate", "check a policy file offline; every problem as FILE:LINE:COL: path: message");
  validate->add_option("file", validate_file, "policy file (OpenShell YAML, version 1)")->required();
  validate->footer("Exit codes: 0 valid, 1 invalid (problems on stderr), 2 unreadable. Example: bulwark policy validate policy.yaml");

  // Changing a live sandbox's policy: every write is a new version; --wait returns once the
  // sandbox's supervisor enforces it.
  bool pwait = false, dry_run = false;
  double pwait_s = 30;
  std::string reason;
  auto add_wait = [&](CLI::App* c) {
    c->add_flag("--wait", pwait, "return once the sandbox enforces the new version");
    c->add_option("--timeout", pwait_s, "seconds --wait waits")->check(CLI::Range(0.1, 300.0))->capture_default_str();
    c->add_option("--reason", reason, "why, kept with the version");
  };
  auto* pset = policy->add_subcommand("set", "replace a sandbox's policy (network_policies change live; static sections may not)");
  pset->add_option("name", ref, "sandbox name or id")->required();
  pset->add_option("--policy", policy_file, "policy file (OpenShell YAML)")->required();
  add_wait(pset);
  pset->footer("Example: bulwark policy set demo --policy policy.yaml --wait");
  auto* pupdate = policy->add_subcommand("update", "change a sandbox's network policy in place");
  cli::UpdateFlags uf;
  pupdate->add_option("name", ref, "sandbox name or id")->required();
  pupdate->add_option("--add-endpoint", uf.add_endpoint, "host:port[:access] (access: read-only, read-write, full)");
  pupdate->add_option("--add-allow", uf.add_allow, "host:port:METHOD:PATH allow rule on that endpoint");
  pupdate->add_option("--add-deny", uf.add_deny, "host:port:METHOD:PATH deny rule on that endpoint");
  pupdate->add_option("--remove-endpoint", uf.remove_endpoint, "host[:port]");
  pupdate->add_option("--remove-allow", uf.remove_allow, "host:port:METHOD:PATH");
  pupdate->add_option("--remove-deny", uf.remove_deny, "host:port:METHOD:PATH");
  pupdate->add_option("--network-policy", uf.network_policy, "the network_policies key to change (default: the one holding host:port; for a new endpoint, one named after the host)");
  pupdate->add_option("--binary", uf.binaries, "executable allowed to use a new endpoint (repeatable)");
  pupdate->add_flag("--dry-run", dry_run, "print the resulting policy; store nothing");
  add_wait(pupdate);
  pupdate->footer("Example: bulwark policy update demo --add-endpoint api.github.com:443:read-only --binary /usr/bin/curl --wait");
  auto* pget = policy->add_subcommand("get", "print a sandbox's policy (-o yaml: the YAML only)");
  uint64_t rev = 0;
  pget->add_option("name", ref, "sandbox name or id")->required();
  pget->add_option("--rev", rev, "version (default: the latest)")->check(CLI::PositiveNumber);
  auto* plist = policy->add_subcommand("list", "list the versions of a sandbox's policy");
  plist->add_option("name", ref, "sandbox name or id")->required();
  // The approval flow: rules proposed by the sandbox's denials (docs/policy.md "Pending proposals").
  int64_t proposal_id = 0;
  bool pending_all = false;
  auto* ppending = policy->add_subcommand("pending", "list the rules proposed by a sandbox's denials, waiting for approval");
  ppending->add_option("name", ref, "sandbox name or id")->required();
  ppending->add_flag("--all", pending_all, "approved and rejected ones too");
  auto* papprove = policy->add_subcommand("approve", "apply a proposed rule to the sandbox's live policy (a new version)");
  papprove->add_option("name", ref, "sandbox name or id")->required();
  papprove->add_option("id", proposal_id, "proposal id (from `bulwark policy pending`)")->required()->check(CLI::PositiveNumber);
  papprove->add_option("--timeout", pwait_s, "seconds to wait for the sandbox to enforce it")->check(CLI::Range(0.1, 300.0))->capture_default_str();
  papprove->add_option("--reason", reason, "why, kept with the version");
  papprove->footer("Example: bulwark policy pending demo; bulwark policy approve demo 3");
  auto* preject = policy->add_subcommand("reject", "drop a proposed rule; the same denial does not propose it again");
  preject->add_option("name", ref, "sandbox name or id")->required();
  preject->add_option("id", proposal_id, "proposal id (from `bulwark policy pending`)")->required()->check(CLI::PositiveNumber);

  // Providers: credentials the gateway keeps sealed; every answer shows them masked.
  auto* provider = app.add_subcommand("provider", "create and manage provider credentials (always shown masked)");
  provider->require_subcommand(1);
  provider->fallthrough();
  cli::ProviderFlags pf;
  std::string base_url;
  auto add_credential_flags = [&](CLI::App* c) {
    c->add_option("--credential", pf.credentials, "KEY=VALUE credential (repeatable)");
    c->add_flag("--from-env", pf.from_env, "take the type's standard variable (e.g. ANTHROPIC_API_KEY) from this environment");
  };
  auto* prov_create = provider->add_subcommand("create", "store a provider's credentials");
  prov_create->add_option("--name", pf.name, "provider name: lowercase letters, digits, '-', '_'")->required();
  prov_create->add_option("--type", pf.type, "provider type: " + bulwark::providers::type_names())
      ->required()
      ->check(CLI::IsMember({"anthropic", "openai", "nvidia", "github", "generic"}));
  add_credential_flags(prov_create);
  auto* create_base_url = prov_create->add_option("--base-url", base_url, "the backend's API root (default: the type's)");
  prov_create->footer("Example: bulwark provider create --name claude --type anthropic --from-env");
  auto* prov_list = provider->add_subcommand("list", "list providers")->alias("ls");
  auto* prov_get = provider->add_subcommand("get", "show one provider");
  prov_get->add_option("name", pf.name, "provider name")->required();
  auto* prov_update = provider->add_subcommand("update", "change a provider's credentials or base URL");
  prov_update->add_option("name", pf.name, "provider name")->required();
  add_credential_flags(prov_update);
  prov_update->add_option("--remove-credential", pf.remove, "KEY to remove (repeatable)");
  auto* update_base_url = prov_update->add_option("--base-url", base_url, "new API root (\"\" = the type's default)");
  prov_update->footer("Example: bulwark provider update claude --credential ANTHROPIC_API_KEY=sk-ant-...");
  auto* prov_delete = provider->add_subcommand("delete", "delete a provider no inference route uses")->alias("rm");
  prov_delete->add_option("name", pf.name, "provider name")->required();

  // Inference routes: which provider serves inference.local calls, globally or for one sandbox.
  auto* inference = app.add_subcommand("inference", "route inference.local calls to providers (global or per sandbox)");
  inference->require_subcommand(1);
  inference->fallthrough();
  cli::InferenceSetFlags inf;
  std::string inf_sandbox, inf_file;
  auto* inf_set = inference->add_subcommand("set", "set the route table of the global scope or of --sandbox");
  inf_set->add_option("--sandbox", inf_sandbox, "sandbox name or id (default: the global table)");
  auto* inf_provider = inf_set->add_option("--provider", inf.provider, "the backend's provider");
  auto* inf_model = inf_set->add_option("--model", inf.model, "model sent to it (default: the one the agent asked for)");
  auto* inf_match = inf_set->add_option("--match", inf.match, "model pattern, '*' matches anything")->capture_default_str();
  auto* inf_privacy = inf_set->add_option("--privacy", inf.privacy, "the backend's: any, or local-only (a server on this host/cluster)")
                          ->check(CLI::IsMember({"any", "local-only"}))
                          ->capture_default_str();
  auto* inf_cost = inf_set->add_option("--cost", inf.cost, "weight: cheaper backends are tried first")
                       ->check(CLI::NonNegativeNumber)
                       ->capture_default_str();
  auto* inf_append = inf_set->add_flag("--append", inf.append, "add the backend to the current table instead of replacing it");
  auto* inf_table_privacy =
      inf_set->add_option("--sandbox-privacy", inf.sandbox_privacy, "the table's: any, or local-only (only local-only backends)")
          ->check(CLI::IsMember({"any", "local-only"}));
  auto* inf_file_opt = inf_set->add_option("--file", inf_file, "the whole table from a YAML or JSON file");
  for (auto* o : {inf_provider, inf_model, inf_match, inf_privacy, inf_cost, inf_append, inf_table_privacy})
    inf_file_opt->excludes(o);
  inf_set->footer("Example: bulwark inference set --match 'gpt-*' --provider openai-prod --model gpt-4o-mini --append");
  auto* inf_get = inference->add_subcommand("get", "show a route table (-o yaml: a file `inference set --file` reads)");
  inf_get->add_option("--sandbox", inf_sandbox, "sandbox name or id (default: the global table)");
  auto* inf_delete = inference->add_subcommand("delete", "delete a route table")->alias("rm");
  inf_delete->add_option("--sandbox", inf_sandbox, "sandbox name or id (default: the global table)");

  cli::add_examples(app);  // after every command is declared: fills in the footers that lack an example
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? cli::kOk : cli::kUsage;
  }

  if (*validate) return validate_policy(validate_file);
  if (*agent_list || (*create && agent == "list")) {  // local: no gateway is called
    try {
      auto presets = cli::load_presets(cli::preset_dirs(cli::environment(environ), exe_dir()));
      if (g.output == "table") {
        std::cout << cli::preset_table(presets);
      } else {
        json all = json::array();
        for (const auto& p : presets)
          all.push_back({{"name", p.name}, {"description", p.description}, {"image", p.image}, {"command", p.command},
                         {"env", p.env}, {"file", p.file}});
        std::cout << (g.output == "json" ? json{{"agents", all}}.dump(2) + "\n" : cli::to_yaml(json{{"agents", all}}));
      }
      return cli::kOk;
    } catch (const CliError& e) {
      std::cerr << "bulwark: " << e.message << "\n";
      return e.exit_code;
    }
  }
  if (*gw_drivers) {  // local: no gateway is called
    try {
      const char* env = std::getenv("BULWARK_DRIVERS");
      auto choice = cli::select_drivers(drivers_flag, env ? env : "", cli::probe_host());
      if (g.output == "json") {
        std::cout << json{{"drivers", choice.drivers}, {"why", choice.why}}.dump(2) << "\n";
      } else {
        for (const auto& d : choice.drivers) std::cout << d << "\n";
        if (isatty(STDERR_FILENO)) std::cerr << "(" << choice.why << ")\n";
      }
      return cli::kOk;
    } catch (const CliError& e) {
      std::cerr << "bulwark: " << e.message << "\n";
      return e.exit_code;
    }
  }

  if (*completion_cmd) {  // generated from the tree above, so it never goes stale
    std::cout << cli::completion_script(app, completion_shell);
    return cli::kOk;
  }
  cli::Target given;  // what --gateway/--token/--token-file or their environment variables say
  given.url = g.gateway;
  given.token = g.token;
  given.token_file = g.token_file;
  given.ca_cert = g.ca_cert;
  given.client_cert = g.client_cert;
  given.client_key = g.client_key;
  if (cli::gateway_command_chosen(gwc)) return cli::run_gateway_command(gwc, given, g.output, std::cout, std::cerr);

  try {
    {  // flags > environment > the selected config gateway > http://127.0.0.1:8080 (cli/config.h)
      auto target = cli::resolve_target(given, cli::load_config(cli::config_dir([](const char* n) {
                                          const char* v = std::getenv(n);
                                          return std::string(v ? v : "");
                                        })));
      g.gateway = target.url;
      g.ca_cert = target.ca_cert;
      g.client_cert = target.client_cert;
      g.client_key = target.client_key;
      if (target.token_from_config) {
        g.token = cli::load_token(target);
        g.token_file.clear();
      }
    }
    const cli::TlsFiles tls{g.ca_cert, g.client_cert, g.client_key};
    GatewayClient gw(g.gateway, cli::choose_token(g.token, g.token_file, [](const std::string& path) {
                       return read_text("--token-file", path, "a token starts with bwk_");
                     }), tls);
    if (cli::run_token_command(tokens, gw, g.output, std::cout, std::cerr)) {
    } else if (*create) {
      json spec = json::object();
      if (!name.empty()) spec["name"] = name;
      if (!image.empty()) spec["image"] = image;
      if (!driver.empty()) spec["driver_kind"] = driver;
      if (!command.empty()) spec["command"] = command;
      if (!policy_file.empty()) spec["policy"] = read_policy_text(policy_file);
      for (const auto& e : envs) {
        auto [k, v] = cli::key_value("--env", e);
        spec["env"][k] = v;
      }
      for (const auto& l : labels) {
        auto [k, v] = cli::key_value("--label", l);
        spec["labels"][k] = v;
      }
      if (!sandbox_providers.empty()) spec["providers"] = sandbox_providers;
      cli::ProviderPlan plan;
      if (!agent.empty()) {
        auto env = cli::environment(environ);
        auto preset = cli::load_preset(agent, cli::preset_dirs(env, exe_dir()));
        cli::apply_preset(preset, spec);
        plan = cli::plan_providers(preset, all_providers(gw), sandbox_providers, env);
        for (const auto& w : plan.warnings) std::cerr << "bulwark: warning: " << w << "\n";
        for (const auto& a : plan.attach) {
          if (a.create) gw.post("/v1/providers", a.body);
          spec["providers"].push_back(a.name);
          std::cerr << cli::attach_line(a) << "\n";
        }
      }
      if (cpus > 0) spec["resources"]["cpus"] = cpus;
      if (!memory.empty()) {
        try {
          spec["resources"]["memory_bytes"] = std::to_string(bulwark::parse_bytes(memory, "--memory"));
        } catch (const bulwark::Error& e) {
          throw CliError{cli::kUsage, e.what()};
        }
      }
      if (pids) spec["resources"]["pids"] = pids;
      if (gpus) spec["resources"]["gpus"] = gpus;
      if (tty) spec["tty"] = true;
      if (keep) spec["keep_after_exit"] = true;
      for (const auto& l : driver_labels) {
        auto [k, v] = cli::key_value("--driver-label", l);
        spec["driver_selector"][k] = v;
      }
      json s = gw.post("/v1/sandboxes", spec);
      if (!agent.empty()) {
        // Without a global route table the attached inference providers are the sandbox's routes;
        // set before the container has started, so the agent's first call finds them.
        bool global = true;
        try {
          gw.get("/v1/inference");
        } catch (const CliError& e) {
          if (e.exit_code != cli::kNotFound) throw;
          global = false;
        }
        if (auto routes = cli::sandbox_routes(plan, global)) {
          gw.put(inference_path(s["sandbox_id"]), *routes);
          std::cerr << "inference: sandbox " << s.value("name", "") << " routes its model calls to "
                    << (*routes)["routes"][0]["backends"].size() << " attached provider(s)\n";
        }
      }
      if (!no_wait) {
        cli::Progress progress(std::cerr, isatty(STDERR_FILENO), "sandbox " + s.value("name", ""));
        s = wait_for(gw, s["sandbox_id"], timeout_s, settled, [&](const json& now) { progress.update(now.value("phase", "")); });
        // A command given after -- runs in the foreground, like `podman run`: wait for it to end
        // (no time limit once it runs) so its output and exit code are what create shows.
        if (!command.empty() && !detach && s.value("phase", "") == "READY")
          s = wait_for(gw, s["sandbox_id"], 1e9, [](const std::string& p) { return p != "READY" && settled(p); });
      }
      print(g, s);
      std::string phase = s.value("phase", "");
      if (phase == "FAILED") {
        std::cerr << "sandbox " << s.value("name", "") << " FAILED: " << s.value("reason", "") << "\n";
        return cli::kSandboxFailed;
      }
      if (phase == "EXITED" && g.output == "table") print_logs(gw.get(path_of(s["sandbox_id"]) + "/logs"));
      // In the foreground the command's own exit code is create's, as with `podman run`: a CI step
      // `bulwark sandbox create -- make test` fails when the tests do.
      if (!command.empty() && !detach && !no_wait && phase == "EXITED" && s.contains("exit_code") &&
          s["exit_code"].is_number_integer()) {
        int code = s["exit_code"].get<int>();
        return code >= 0 && code <= 255 ? code : cli::kFailure;  // a process exit code is 8 bits: 256 is no success
      }
    } else if ((*list || *get) && watch_flag) {
      cli::watch(
          [&] {
            json r = *list ? cli::list_sandboxes(lf, [&](const std::string& path) { return gw.get(path); }) : gw.get(path_of(ref));
            if (g.output == "json") return r.dump() + "\n";  // one line a change
            if (g.output == "yaml") return cli::to_yaml(r) + "---\n";
            return cli::sandbox_table(*list ? r.value("sandboxes", json::array()).get<std::vector<json>>() : std::vector<json>{r});
          },
          isatty(STDOUT_FILENO), std::cout);
    } else if (*list) {
      json r = cli::list_sandboxes(lf, [&](const std::string& path) { return gw.get(path); });
      if (g.output == "json") std::cout << r.dump(2) << "\n";
      else if (g.output == "yaml") std::cout << cli::to_yaml(r);
      else std::cout << cli::sandbox_table(r.value("sandboxes", json::array()).get<std::vector<json>>());
      // Where the next call would go on: said on stderr, so the table stays clean for pipes.
      if (g.output == "table" && !r.value("next_page_token", "").empty())
        std::cerr << "more: bulwark sandbox list --page-token " << r.value("next_page_token", "") << " (with the same filters)\n";
    } else if (*get) {
      print(g, gw.get(path_of(ref)));
    } else if (*del) {
      json s = gw.del(path_of(ref));
      if (del_wait) s = wait_for(gw, s["sandbox_id"], 60, [](const std::string& p) { return p == "DELETED"; });
      print(g, s);
    } else if (*stop) {
      print(g, gw.post(path_of(ref) + "/stop", json{{"grace_s", grace_s}}));
    } else if (*start) {
      json s = gw.post(path_of(ref) + "/start", json::object());
      if (!no_wait) s = wait_for(gw, s["sandbox_id"], timeout_s, settled);
      print(g, s);
      if (s.value("phase", "") == "FAILED") {
        std::cerr << "sandbox " << s.value("name", "") << " FAILED: " << s.value("reason", "") << "\n";
        return cli::kSandboxFailed;
      }
    } else if (*connect) {
      return cli::connect_terminal(g.gateway, connect_port,
                                   cli::choose_token(g.token, g.token_file, [](const std::string& path) {
                                     return read_text("--token-file", path, "a token starts with bwk_");
                                   }),
                                   ref, connect_command, tls);
    } else if (*exec_cmd || *upload || *download) {
      cli::ExecClient ec(g.gateway, cli::choose_token(g.token, g.token_file, [](const std::string& path) {
                           return read_text("--token-file", path, "a token starts with bwk_");
                         }), tls);
      if (*exec_cmd) {
        std::optional<std::string> in;
        if (exec_stdin) in = std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
        return ec.exec(ref, cli::exec_body(exec_command, exec_env, exec_workdir, in, exec_timeout), !exec_no_stream, std::cout,
                       std::cerr);
      }
      if (*upload) {
        json r = ec.upload(ref, local_path, remote_path.empty() ? "/sandbox" : remote_path);
        if (g.output == "json") std::cout << r.dump(2) << "\n";
        else std::cerr << "uploaded " << local_path << " (" << r.value("bytes", 0) << " bytes of tar) into " << r.value("path", "") << "\n";
      } else {
        size_t n = ec.download(ref, remote_path, local_path.empty() ? "." : local_path);
        std::cerr << "downloaded " << remote_path << " (" << n << " bytes of tar) into " << (local_path.empty() ? "." : local_path) << "\n";
      }
    } else if (*events_cmd || *top_events || ((*logs || *top_logs) && logs_follow)) {
      cli::StreamClient sc(g.gateway, cli::choose_token(g.token, g.token_file, [](const std::string& path) {
                             return read_text("--token-file", path, "a token starts with bwk_");
                           }), tls);
      cli::LineSplitter lines;
      cli::SseParser sse;
      if (*events_cmd || *top_events) {
        sc.get("events", cli::events_path(ref), "text/event-stream", [&](const char* data, size_t n) {
          sse.feed(data, n, [&](const std::string& event, const std::string& d) {
            json j = json::parse(d, nullptr, false);
            if (g.output == "json") std::cout << json{{"event", event}, {"data", j}}.dump() << std::endl;
            else std::cout << cli::event_text(event, j) << std::endl;
          });
          return true;
        });
      } else {
        sc.get("logs", cli::logs_path(ref, tail, denials_only ? "denial" : inference_only ? "inference" : "", logs_since, true),
               "application/x-ndjson", [&](const char* data, size_t n) {
                 lines.feed(data, n, [&](const std::string& line) {
                   if (line.empty()) return;
                   if (g.output == "json") {
                     std::cout << line << std::endl;
                     return;
                   }
                   json l = json::parse(line, nullptr, false);
                   (l.value("stream", "") == "stderr" ? std::cerr : std::cout) << l.value("line", "") << std::endl;
                 });
                 return true;
               });
      }
    } else if (*logs || *top_logs) {
      json r = gw.get(cli::logs_path(ref, tail, denials_only ? "denial" : inference_only ? "inference" : "", logs_since, false));
      if (g.output == "json") std::cout << r.dump(2) << "\n";
      else if (denials_only) std::cout << cli::denial_table(r.value("lines", json::array()).get<std::vector<json>>());
      else if (inference_only) std::cout << cli::inference_event_table(r.value("lines", json::array()).get<std::vector<json>>());
      else print_logs(r);
    } else if (*pset || *pupdate) {
      json body;
      if (*pset) body["yaml"] = read_policy_text(policy_file);
      else body["operations"] = cli::update_operations(uf);
      if (dry_run) body["dry_run"] = true;
      if (pwait) {
        body["wait_ms"] = static_cast<int64_t>(pwait_s * 1000);
        gw.set_read_timeout(std::chrono::seconds(static_cast<int64_t>(pwait_s) + 30));
      }
      if (!reason.empty()) body["reason"] = reason;
      json r = *pset ? gw.put(path_of(ref) + "/policy", body) : gw.patch(path_of(ref) + "/policy", body);
      if (g.output == "json") std::cout << r.dump(2) << "\n";
      else if (dry_run) std::cout << r.value("yaml", "");
      else
        std::cout << "sandbox " << ref << ": policy version " << r.value("version", "?")
                  << (r.value("changed", false) ? " stored" : " unchanged")
                  << (pwait && r.value("acknowledged", false) ? ", enforced" : "") << "\n";
      if (pwait && !dry_run && !r.value("acknowledged", false)) {
        std::string acked = r.value("acked_version", "0");
        throw CliError{r.value("ack_error", "").empty() ? cli::kTimedOut : cli::kFailure,
                       "the sandbox did not confirm version " + r.value("version", "?") +
                           (r.value("ack_error", "").empty() ? " within " + std::to_string(static_cast<int>(pwait_s)) + " s"
                                                             : ": " + r.value("ack_error", "")) +
                           "; it enforces version " + (acked == "0" ? std::string("(unknown)") : acked)};
      }
    } else if (*pget) {
      json r = gw.get(path_of(ref) + "/policy" + (rev ? "?version=" + std::to_string(rev) : ""));
      if (g.output == "json") std::cout << r.dump(2) << "\n";
      else std::cout << r.value("yaml", "");
    } else if (*plist) {
      json r = gw.get(path_of(ref) + "/policy/versions");
      if (g.output == "json") {
        std::cout << r.dump(2) << "\n";
      } else {
        std::vector<std::vector<std::string>> rows = {{"VERSION", "CREATED", "SHA256", "BYTES", "AUTHOR", "REASON"}};
        for (const auto& v : r.value("versions", json::array()))
          rows.push_back({v.value("version", ""), v.value("created_at_ms", ""), v.value("sha256", "").substr(0, 12),
                          std::to_string(v.value("size_bytes", 0)), v.value("author", ""), v.value("reason", "")});
        std::cout << cli::table(rows);
      }
    } else if (*ppending) {
      json r = gw.get("/v1/policies/" + httplib::detail::encode_query_param(ref) + "/pending" + (pending_all ? "?all=true" : ""));
      if (g.output == "json") std::cout << r.dump(2) << "\n";
      else std::cout << cli::proposal_table(r.value("proposals", json::array()).get<std::vector<json>>());
    } else if (*papprove || *preject) {
      std::string path = "/v1/policies/" + httplib::detail::encode_query_param(ref) + "/pending/" + std::to_string(proposal_id);
      json body = json::object();
      if (*papprove) {
        body["wait_ms"] = static_cast<int64_t>(pwait_s * 1000);
        if (!reason.empty()) body["reason"] = reason;
        gw.set_read_timeout(std::chrono::seconds(static_cast<int64_t>(pwait_s) + 30));
      }
      json r = gw.post(path + (*papprove ? "/approve" : "/reject"), body);
      if (g.output == "json") std::cout << r.dump(2) << "\n";
      else if (*preject) std::cout << "proposal " << proposal_id << " rejected\n";
      else std::cout << cli::approval_line(r);
      if (*papprove && !r.value("policy", json::object()).value("acknowledged", false))
        throw CliError{cli::kTimedOut, "the sandbox did not confirm the new policy version within " +
                                           std::to_string(static_cast<int>(pwait_s)) + " s (it may not be running)"};
    } else if (*prov_create) {
      if (create_base_url->count() > 0) pf.base_url = base_url;
      auto req = cli::provider_create_body(pf, cli::environment(environ));
      report_taken(req.taken);
      print_providers(g, {gw.post("/v1/providers", req.body)}, true);
    } else if (*prov_list) {
      // Every page: the gateway answers at most 1000 at a time.
      std::vector<json> all_providers;
      std::string token;
      do {
        json r = gw.get("/v1/providers?limit=1000" + (token.empty() ? "" : "&page_token=" + httplib::detail::encode_query_param(token)));
        for (const auto& p : r.value("providers", json::array())) all_providers.push_back(p);
        token = r.value("next_page_token", "");
      } while (!token.empty());
      print_providers(g, all_providers, false);
    } else if (*prov_get) {
      print_providers(g, {gw.get(provider_path(pf.name))}, true);
    } else if (*prov_update) {
      if (update_base_url->count() > 0) pf.base_url = base_url;
      // --from-env looks for the provider's own type's variables.
      std::string type = pf.from_env ? gw.get(provider_path(pf.name)).value("type", "") : "";
      auto req = cli::provider_update_body(pf, type, cli::environment(environ));
      report_taken(req.taken);
      print_providers(g, {gw.patch(provider_path(pf.name), req.body)}, true);
    } else if (*prov_delete) {
      gw.del(provider_path(pf.name));
      std::cout << (g.output == "json" ? "{}" : "provider " + pf.name + " deleted") << "\n";
    } else if (*inf_set) {
      json body;
      if (!inf_file.empty()) {
        body = cli::inference_config_from_text(inf_file, read_text("--file", inf_file, "a route table has `routes:`"));
      } else {
        if (inf.provider.empty()) throw CliError{cli::kUsage, "inference set: --provider is required (or --file)"};
        json current;  // null: the scope has no table yet
        if (inf.append) {
          try {
            current = gw.get(inference_path(inf_sandbox));
          } catch (const CliError& e) {
            if (e.exit_code != cli::kNotFound) throw;  // an unknown sandbox is reported by the PUT
          }
        }
        body = cli::inference_set_body(inf, current);
      }
      json r = gw.put(inference_path(inf_sandbox), body);
      if (g.output == "json") std::cout << r.dump(2) << "\n";
      else std::cout << cli::inference_config_table(r);
    } else if (*inf_get) {
      json r = gw.get(inference_path(inf_sandbox));
      if (g.output == "json") std::cout << r.dump(2) << "\n";
      else if (g.output == "yaml") std::cout << cli::inference_config_yaml(r);
      else std::cout << cli::inference_config_table(r);
    } else if (*inf_delete) {
      gw.del(inference_path(inf_sandbox));
      std::cout << (g.output == "json" ? std::string("{}")
                                       : "inference routes of " + (inf_sandbox.empty() ? std::string("the global scope")
                                                                                       : "sandbox " + inf_sandbox) +
                                             " deleted")
                << "\n";
    } else if (*status) {
      gw.set_read_timeout(std::chrono::seconds(30));
      json r = gw.get("/v1/status?timeout_ms=" + std::to_string(status_timeout_ms));
      if (g.output == "json") std::cout << r.dump(2) << "\n";
      else if (g.output == "yaml") std::cout << cli::to_yaml(r);
      else std::cout << cli::status_table(r, g.gateway);
    } else if (*health) {
      json r = gw.get("/healthz");
      std::cout << (g.output == "json" ? r.dump(2) : "gateway " + g.gateway + ": " + r.value("status", "?")) << "\n";
    }
    return cli::kOk;
  } catch (const CliError& e) {
    std::cerr << "bulwark: " << e.message << "\n";
    return e.exit_code;
  } catch (const std::exception& e) {
    std::cerr << "bulwark: " << e.what() << "\n";
    return cli::kFailure;
  }
}
