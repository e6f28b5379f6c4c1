// bulwark: the command line for a Bulwark gateway. Every command is one or a few REST calls.
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>

#include "cli/client.h"
#include "cli/format.h"
#include "cli/policy_ops.h"
#include "shared/policy.h"
#include "shared/util.h"

using bulwark::cli::CliError;
using bulwark::cli::GatewayClient;
using nlohmann::json;
namespace cli = bulwark::cli;

namespace {

struct Globals {
  std::string gateway = "http://127.0.0.1:8080";
  std::string output = "table";
};

bool settled(const std::string& phase) {
  return phase == "READY" || phase == "EXITED" || phase == "FAILED" || phase == "DELETED";
}

void print(const Globals& g, const json& sandbox) {
  if (g.output == "json") std::cout << sandbox.dump(2) << "\n";
  else std::cout << cli::sandbox_table({sandbox});
}

std::string path_of(const std::string& ref) { return "/v1/sandboxes/" + httplib::detail::encode_query_param(ref); }

// Polls until the sandbox reaches a phase in `until`, or the timeout passes.
json wait_for(GatewayClient& gw, const std::string& id, double timeout_s, const std::function<bool(const std::string&)>& until) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  for (;;) {
    json s = gw.get(path_of(id));
    if (until(s.value("phase", ""))) return s;
    if (std::chrono::steady_clock::now() >= deadline)
      throw CliError{cli::kTimedOut, "sandbox " + s.value("name", id) + " is still " + s.value("phase", "?") + " after " +
                                         std::to_string(static_cast<int>(timeout_s)) + " s; see `bulwark sandbox get " +
                                         s.value("name", id) + "`"};
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// The text of a --policy file, sent as is: the gateway validates it with the supervisor's parser.
std::string read_policy_text(const std::string& path) {
  auto fail = [&](const std::string& why) { return CliError{cli::kUsage, "--policy " + path + ": " + why}; };
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
  // Sent empty, it would read as "no policy" and the defaults would apply instead.
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) throw fail("the file is empty (a policy starts with `version: 1`)");
  return text;
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

void print_logs(const json& reply) {
  for (const auto& l : reply.value("lines", json::array())) {
    (l.value("stream", "") == "stderr" ? std::cerr : std::cout) << l.value("line", "") << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("bulwark: create and manage agent sandboxes through a Bulwark gateway");
  app.set_version_flag("--version", std::string(bulwark::kVersion));
  app.require_subcommand(1);
  app.fallthrough();  // global flags (-o, --gateway) may follow the subcommand
  Globals g;
  app.add_option("--gateway", g.gateway, "gateway URL")->envname("BULWARK_GATEWAY")->capture_default_str();
  app.add_option("-o,--output", g.output, "table, json, or yaml (policy get)")->check(CLI::IsMember({"table", "json", "yaml"}))->capture_default_str();
  app.footer("Exit codes: 0 ok, 1 request failed or policy invalid, 2 usage, 3 not found,\n"
             "4 gateway unreachable, 5 sandbox FAILED, 6 timed out. Example: bulwark sandbox create --name demo -- echo hi");

  auto* sandbox = app.add_subcommand("sandbox", "create, list, inspect and delete sandboxes")->alias("sb");
  sandbox->require_subcommand(1);
  sandbox->fallthrough();

  // create
  auto* create = sandbox->add_subcommand("create", "create a sandbox running CMD (default: sleep infinity)");
  std::string name, image, driver, policy_file;
  std::vector<std::string> command, envs, labels;
  bool no_wait = false;
  double timeout_s = 120;
  create->add_option("--name", name, "sandbox name (default: generated)");
  create->add_option("--image", image, "local image (default: the gateway's)");
  create->add_option("--driver", driver, "compute driver kind: podman, docker, kubernetes, vm")
      ->check(CLI::IsMember({"podman", "docker", "kubernetes", "vm"}));
  create->add_option("--policy", policy_file, "sandbox policy file (OpenShell YAML; see `bulwark policy validate`)");
  create->add_option("-e,--env", envs, "KEY=VALUE for the agent's environment (repeatable)");
  create->add_option("-l,--label", labels, "KEY=VALUE label (repeatable)");
  bool detach = false;
  create->add_flag("--no-wait", no_wait, "return once accepted instead of waiting for READY");
  create->add_flag("-d,--detach", detach, "with a command: return at READY instead of waiting for it to end");
  create->add_option("--timeout", timeout_s, "seconds to wait for READY")->check(CLI::PositiveNumber)->capture_default_str();
  create->add_option("command", command, "the agent command, after --");
  create->footer("Example: bulwark sandbox create --name demo -- sh -c 'echo hello'");

  auto* list = sandbox->add_subcommand("list", "list sandboxes")->alias("ls");
  bool all = false;
  list->add_flag("-a,--all", all, "include deleted sandboxes");

  std::string ref;
  auto* get = sandbox->add_subcommand("get", "show one sandbox");
  get->add_option("name", ref, "sandbox name or id")->required();

  auto* del = sandbox->add_subcommand("delete", "delete a sandbox and its workload")->alias("rm");
  bool del_wait = false;
  del->add_option("name", ref, "sandbox name or id")->required();
  del->add_flag("--wait", del_wait, "wait until the workload is gone");

  auto* logs = sandbox->add_subcommand("logs", "print the agent's output");
  int tail = 1000;
  logs->add_option("name", ref, "sandbox name or id")->required();
  logs->add_option("--tail", tail, "last N lines")->check(CLI::PositiveNumber)->capture_default_str();
  bool denials_only = false;
  logs->add_flag("--denials", denials_only, "only what the sandbox's policy refused (or allowed in audit mode), as a table");

  auto* health = app.add_subcommand("health", "check that the gateway answers");

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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? cli::kOk : cli::kUsage;
  }

  if (*validate) return validate_policy(validate_file);

  try {
    GatewayClient gw(g.gateway);
    if (*create) {
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
      json s = gw.post("/v1/sandboxes", spec);
      if (!no_wait) {
        if (isatty(STDERR_FILENO)) std::cerr << "waiting for sandbox " << s.value("name", "") << " to be READY...\n";
        s = wait_for(gw, s["sandbox_id"], timeout_s, settled);
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
    } else if (*list) {
      json r = gw.get(std::string("/v1/sandboxes") + (all ? "?all=true" : ""));
      if (g.output == "json") std::cout << r.dump(2) << "\n";
      else std::cout << cli::sandbox_table(r.value("sandboxes", json::array()).get<std::vector<json>>());
    } else if (*get) {
      print(g, gw.get(path_of(ref)));
    } else if (*del) {
      json s = gw.del(path_of(ref));
      if (del_wait) s = wait_for(gw, s["sandbox_id"], 60, [](const std::string& p) { return p == "DELETED"; });
      print(g, s);
    } else if (*logs) {
      json r = gw.get(path_of(ref) + "/logs?tail=" + std::to_string(tail) + (denials_only ? "&stream=denial" : ""));
      if (g.output == "json") std::cout << r.dump(2) << "\n";
      else if (denials_only) std::cout << cli::denial_table(r.value("lines", json::array()).get<std::vector<json>>());
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
