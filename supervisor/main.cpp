// bulwark-supervisor: runs one sandbox. Confines the agent command (contain.h lists the steps in
// order), serves its only way out (the egress proxy), checks in with the gateway over NATS,
// relays the agent's output, forwards signals, reaps, and reports the exit code.
// `--standalone --policy FILE -- CMD` does the same on a bare Linux host with no NATS.
// See README.md.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <filesystem>
#include <optional>
#include <thread>

#include "shared/audit.h"
#include "shared/log.h"
#include "shared/metrics.h"
#include "shared/metrics_listener.h"
#include "shared/policy.h"
#include "shared/service.h"
#include "shared/util.h"
#include "supervisor/agent.h"
#include "supervisor/contain.h"
#include "supervisor/dns_server.h"
#include "supervisor/exec.h"
#include <fstream>
#include "supervisor/inference_client.h"
#include "supervisor/policy_follower.h"
#include "supervisor/provider_env.h"
#include "supervisor/proxy/sandbox_ca.h"
#include "supervisor/firewall.h"
#include "supervisor/landlock_audit.h"
#include "supervisor/proxy/egress_proxy.h"
#include "supervisor/session.h"
#include "supervisor/supervisor_metrics.h"

extern char** environ;

namespace {

using bulwark::supervisor::Session;

constexpr int kExitBadPolicy = 2;
constexpr int kExitCannotConnect = 125;  // as `podman run` uses for its own failures
constexpr int kExitConfinement = 126;

sigset_t handled_signals() {
  sigset_t s;
  sigemptyset(&s);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH}) sigaddset(&s, sig);
  return s;
}

// Waits for SIGCHLD and forwards everything else to the agent's init until it is reaped.
// Orphans reparented to us (we are PID 1 or a subreaper) are reaped on the way.
int supervise(pid_t agent) {
  sigset_t set = handled_signals();
  for (;;) {
    siginfo_t info;
    int sig = sigwaitinfo(&set, &info);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      spdlog::info("forwarding {} to the agent", strsignal(sig));
      kill(agent, sig);
      continue;
    }
    for (;;) {
      int status = 0;
      pid_t p = waitpid(-1, &status, WNOHANG);
      if (p <= 0) break;
      if (p == agent) return bulwark::exit_code_of(status);
    }
  }
}

// Everything the sandbox says about itself goes to our log and, with a gateway session, to the
// sandbox's log subject (stream "bulwark"), so `bulwark sandbox logs` shows denials.
void notice(Session* session, const std::string& text) {
  spdlog::warn("{}", text);
  if (session) session->log_line("bulwark", text);
}

// A denial: logged here, and published as a structured event (stream "denial" of the sandbox's
// log) for `bulwark sandbox logs --denials`.
void deny(Session* session, const bulwark::v1::Denial& d, const std::string& text) {
  // The proxy counts its own decisions (the allowed ones never come here).
  if (d.layer() != "proxy") bulwark::supervisor::count_decision(d.layer(), bulwark::supervisor::decision_name(d.audit(), d.audit()));
  spdlog::warn("{}", text);
  if (session) session->denial(d, text);
}

bulwark::v1::Denial denial_of(const std::string& layer, const std::string& reason) {
  bulwark::v1::Denial d;
  d.set_layer(layer);
  d.set_reason(reason);
  return d;
}

// tty: fd is a pseudo-terminal's master, whose lines end in "\r\n".
std::thread relay(bulwark::Fd fd, FILE* echo, const char* stream, Session* session, std::atomic<int>& open_relays,
                  std::mutex& mu, std::condition_variable& done, bool tty = false) {
  return std::thread([fd = std::move(fd), echo, stream, session, &open_relays, &mu, &done, tty]() mutable {
    bulwark::supervisor::relay_lines(fd.get(), 16 * 1024, [&](const std::string& raw) {
      const std::string line = tty ? bulwark::supervisor::tty_line(raw) : raw;
      std::fprintf(echo, "%s\n", line.c_str());
      std::fflush(echo);
      if (session) session->log_line(stream, line);
    });
    std::lock_guard lock(mu);
    --open_relays;
    done.notify_all();
  });
}

bulwark::policy::Policy load_policy(const std::string& file) {
  if (!file.empty()) return bulwark::policy::load_policy_file(file);
  if (const char* yaml = std::getenv("BULWARK_POLICY_YAML")) return bulwark::policy::parse_policy(yaml, "sandbox policy");
  return bulwark::policy::Policy{};  // defaults: system dirs read-only, no network
}

}  // namespace

int main(int argc, char** argv) {
  bulwark::Flags flags("bulwark-supervisor", "runs one sandbox's agent command confined by a policy");
  bulwark::CommonOptions common;
  bulwark::add_common_options(flags, common);
  std::string sandbox_id, policy_file, upstream_ca;
  std::string standalone = "false";
  std::string transparent_egress = "true";
  std::string keep_after_exit = "false";
  std::string tty = "false";
  std::string provider_env_flag = "auto";
  double inference_first_frame_s = 310, inference_idle_s = 130;
  int inference_max_request = static_cast<int>(bulwark::proxy::kDefaultInferenceMaxRequestBytes);
  std::vector<std::string> command;
  flags.text("sandbox-id", &sandbox_id, "this sandbox's id")
      .text("policy", &policy_file, "policy file (OpenShell format); default: BULWARK_POLICY_YAML, else the default policy")
      .text("upstream-ca", &upstream_ca, "PEM file of CAs trusted for upstream TLS servers besides the system roots")
      .choice("standalone", &standalone, "confine directly on this host, with no gateway or NATS", {"true", "false"})
      .choice("transparent-egress", &transparent_egress,
              "police clients that ignore the proxy settings too: the agent's TCP to any address is redirected to "
              "the proxy, and its DNS is answered from the policy (docs/proxy.md); false: only the proxy is "
              "reachable and direct connections and DNS are refused",
              {"true", "false"})
      .choice("keep-after-exit", &keep_after_exit,
              "spec.keep_after_exit: when the agent ends, report its exit code but keep the sandbox running for "
              "exec and file transfer until it is deleted (SIGTERM)",
              {"true", "false"})
      .choice("tty", &tty,
              "spec.tty: the agent runs on a pseudo-terminal (isatty is true; its output is one stream, "
              "relayed as stdout)",
              {"true", "false"})
      .choice("provider-env", &provider_env_flag,
              "the agent's provider environment from gateway-api at launch: auto (if there is one), required (fail "
              "the launch without it), off",
              {"auto", "required", "off"})
      .seconds("inference-first-frame-timeout", &inference_first_frame_s,
               "inference.local: a call with no answer from the privacy-router this long gets 504", 1, 3600)
      .seconds("inference-idle-timeout", &inference_idle_s,
               "inference.local: a response with no data from the privacy-router this long is cut", 1, 3600)
      .integer("inference-max-request-bytes", &inference_max_request,
               "inference.local: larger requests get 413 (never more than NATS max_payload minus 64 KiB)", 1024,
               1 << 30)
      .text("metrics-listen", &common.metrics_listen,
            "HOST:PORT serving Prometheus /metrics, /readyz and /livez (decisions by layer, policy version, the "
            "agent's state) in the sandbox's container network; default: off")
      .rest("command", &command, "the agent command, after --", true);
  // `--standalone` alone reads as `--standalone=true` (Flags takes values only).
  std::vector<char*> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    if (std::string(args[i]) == "--") break;
    if (std::string(args[i]) == "--standalone") args[i] = const_cast<char*>("--standalone=true");
  }
  if (int rc = flags.parse(static_cast<int>(args.size()), args.data()); rc >= 0) return rc;
  const bool standalone_flag = standalone == "true";
  const bool transparent = transparent_egress == "true";
  const bool keep = keep_after_exit == "true" && !standalone_flag;  // nothing could exec into a standalone one
  if (standalone_flag && sandbox_id.empty()) sandbox_id = "standalone-" + bulwark::random_hex(4);
  if (!bulwark::is_subject_token(sandbox_id)) {
    std::cerr << "bulwark-supervisor: --sandbox-id (BULWARK_SANDBOX_ID) must be set to a valid sandbox id\n";
    return 2;
  }
  const auto provider_env_mode = bulwark::supervisor::parse_provider_env_mode(provider_env_flag);
  if (standalone_flag && provider_env_mode == bulwark::supervisor::ProviderEnvMode::kRequired) {
    std::cerr << "bulwark-supervisor: --provider-env required needs a gateway (it cannot be used with --standalone)\n";
    return 2;
  }
  try {
    bulwark::init_logging("supervisor", bulwark::parse_log_format(common.log_format), common.log_level);
    if (!common.metrics_listen.empty()) bulwark::metrics::parse_listen(common.metrics_listen);  // a flag error
  } catch (const bulwark::Error& e) {
    std::cerr << "bulwark-supervisor: " << e.what() << "\n";
    return 2;
  }

  bulwark::policy::Policy policy;
  std::shared_ptr<const bulwark::policy::CompiledPolicy> compiled;
  try {
    policy = load_policy(policy_file);
    compiled = bulwark::policy::CompiledPolicy::compile(policy);
  } catch (const bulwark::Error& e) {
    std::cerr << e.what() << "\n";
    return kExitBadPolicy;
  }

  sigset_t set = handled_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread exists, so all inherit it
  signal(SIGPIPE, SIG_IGN);
  if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1);

  // The sandbox's own CA, for inspecting TLS to `protocol: rest` endpoints; the agent trusts it
  // through a bundle (the image's roots plus this CA) that its TLS stacks are pointed at.
  std::shared_ptr<bulwark::proxy::SandboxCa> ca;
  std::unique_ptr<bulwark::TempDir> ca_dir;
  std::vector<std::string> agent_env = bulwark::supervisor::agent_environment(environ);
  std::vector<std::string> extra_read_only;
  try {
    ca = std::make_shared<bulwark::proxy::SandboxCa>(bulwark::proxy::SandboxCa::generate(sandbox_id));
    ca_dir = std::make_unique<bulwark::TempDir>("bulwark-ca");
    ::chmod(ca_dir->path().c_str(), 0755);  // the agent's uid reads the bundle inside
    std::string bundle = ca->write_trust_bundle(ca_dir->path(), bulwark::proxy::find_system_bundle());
    for (const auto& [k, v] : bulwark::proxy::trust_env(bundle)) {
      std::erase_if(agent_env, [&](const std::string& e) { return e.rfind(k + "=", 0) == 0; });
      agent_env.push_back(k + "=" + v);
    }
    extra_read_only.push_back(bundle);
  } catch (const std::exception& e) {
    ca.reset();  // inspected endpoints are then refused, not passed unchecked
    spdlog::warn("sandbox {}: no TLS inspection ({}): CONNECTs to protocol: rest endpoints will be denied", sandbox_id, e.what());
  }
  if (upstream_ca.empty()) {
    // The host's roots shipped in the supervisor bundle (scripts/bundle-supervisor), for images without any.
    std::error_code ec;
    auto roots = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path().parent_path() / "ca-certificates.crt";
    if (!ec && std::filesystem::exists(roots, ec)) upstream_ca = roots.string();
  }

  // Step 1 of contain.h must run before any thread exists: clone the agent's init now.
  std::unique_ptr<bulwark::supervisor::AgentLauncher> launcher;
  std::unique_ptr<bulwark::TempDir> net_dir;  // the agent's resolv.conf (transparent egress)
  std::unique_ptr<bulwark::supervisor::TransparentRedirect> redirect;
  try {
    bulwark::supervisor::ContainOptions co{sandbox_id, command, agent_env, policy};
    co.extra_read_only = extra_read_only;
    co.keep_after_exit = keep;
    co.tty = tty == "true";
    co.transparent = transparent;
    struct stat resolv {};
    if (transparent && (::lstat("/etc/resolv.conf", &resolv) != 0 || !S_ISREG(resolv.st_mode)))
      // Nothing to bind over (or a symlink into /run, which the sandbox covers): the agent's
      // lookups then go nowhere, which is closed; TCP is still policed.
      spdlog::warn("sandbox {}: /etc/resolv.conf is missing or not a regular file: the agent gets no DNS", sandbox_id);
    else if (transparent) {
      net_dir = std::make_unique<bulwark::TempDir>("bulwark-net");
      ::chmod(net_dir->path().c_str(), 0755);
      co.resolv_conf = net_dir->file("resolv.conf");
      co.extra_read_only.push_back(co.resolv_conf);
      std::ofstream(co.resolv_conf) << "";  // written below, once the address is known; read at release
    }
    launcher = std::make_unique<bulwark::supervisor::AgentLauncher>(std::move(co));
    launcher->setup_network();
    if (transparent) {
      const auto& veth = launcher->veth();
      if (net_dir) {
        std::ofstream f(net_dir->file("resolv.conf"));
        f << "nameserver " << bulwark::supervisor::ip_to_string(veth.host_addr) << "\noptions attempts:2 timeout:2\n";
        if (!f) throw bulwark::Error(bulwark::Code::kInternal, "cannot write the agent's resolv.conf");
      }
      redirect = std::make_unique<bulwark::supervisor::TransparentRedirect>(veth.host_if, veth.host_addr,
                                                                            bulwark::supervisor::kTransparentPort);
    }
  } catch (const std::exception& e) {
    spdlog::critical("sandbox {}: cannot build the agent's namespaces: {}", sandbox_id, e.what());
    return kExitConfinement;
  }

  // Prometheus metrics: after step 1 (the listener is a thread), before anything is counted.
  std::atomic<bool> agent_started{false};
  std::optional<bulwark::MetricsListener> metrics_listener;
  bulwark::metrics::Registry::Collector process_metrics;
  if (!common.metrics_listen.empty()) {
    try {
      process_metrics = bulwark::metrics::register_process_metrics(bulwark::metrics::registry(), "supervisor", bulwark::kVersion);
      bulwark::supervisor::set_policy_version(0);
      bulwark::supervisor::set_agent_running(false);
      metrics_listener.emplace(common.metrics_listen, [&agent_started] {
        return agent_started ? std::string() : std::string("agent: not started yet");
      });
    } catch (const std::exception& e) {
      spdlog::critical("sandbox {}: {}", sandbox_id, e.what());
      return kExitConfinement;
    }
  }

  std::unique_ptr<Session> session;
  if (!standalone_flag) {
    try {
      session = std::make_unique<Session>(common, sandbox_id);
    } catch (const std::exception& e) {
      spdlog::critical("sandbox {}: cannot reach the gateway session: {}", sandbox_id, e.what());
      return kExitCannotConnect;
    }
  }

  // The provider environment, before the agent exists: merged into its environment only.
  std::optional<std::vector<std::string>> launch_env;
  if (session && provider_env_mode != bulwark::supervisor::ProviderEnvMode::kOff) {
    bulwark::supervisor::ProviderEnvOptions peo;
    peo.mode = provider_env_mode;
    try {
      auto pe = bulwark::supervisor::fetch_provider_env(session->bus(), sandbox_id, peo);
      if (!pe.env.empty()) {
        auto merged = bulwark::supervisor::merge_provider_env(launcher->env(), pe.env);
        // Names only: the values are credentials.
        spdlog::info("sandbox {}: provider environment from {}: {}", sandbox_id,
                     pe.providers.empty() ? std::string("(unnamed providers)") : fmt::format("{}", fmt::join(pe.providers, ", ")),
                     merged.set.empty() ? std::string("(none)") : fmt::format("{}", fmt::join(merged.set, ", ")));
        for (const auto& r : merged.refused) spdlog::warn("sandbox {}: provider variable not set: {}", sandbox_id, r);
        launch_env = std::move(merged.env);
      } else if (!pe.providers.empty()) {
        spdlog::info("sandbox {}: providers {} give the agent no variables", sandbox_id, fmt::format("{}", fmt::join(pe.providers, ", ")));
      }
    } catch (const std::exception& e) {
      spdlog::critical("sandbox {}: {}", sandbox_id, e.what());
      try {
        session->failed(e.what());
        session->close();
      } catch (const std::exception&) {
      }
      return kExitCannotConnect;
    }
  }

  // inference.local: calls travel to a privacy-router over NATS. Without NATS it answers 503.
  std::unique_ptr<bulwark::supervisor::InferenceClient> inference;
  if (session) {
    try {
      bulwark::supervisor::InferenceClient::Options io;
      io.sandbox_id = sandbox_id;
      io.first_frame_timeout = std::chrono::milliseconds(static_cast<int64_t>(inference_first_frame_s * 1000));
      io.idle_timeout = std::chrono::milliseconds(static_cast<int64_t>(inference_idle_s * 1000));
      inference = std::make_unique<bulwark::supervisor::InferenceClient>(session->bus(), io);
    } catch (const std::exception& e) {
      spdlog::error("sandbox {}: inference.local will answer 503: {}", sandbox_id, e.what());
    }
  }

  std::unique_ptr<bulwark::proxy::EgressProxy> proxy;
  std::unique_ptr<bulwark::supervisor::DnsResponder> dns;
  // What the sandbox's DNS answered: nameless transparent connections are attributed by it.
  auto dns_names = std::make_shared<bulwark::supervisor::DnsNames>();
  std::unique_ptr<bulwark::supervisor::DenialLog> denials;
  std::unique_ptr<bulwark::supervisor::LandlockAuditLog> landlock_log;
  std::string audit_problem;
  bulwark::supervisor::ContainReport report;
  try {
    bulwark::proxy::EgressProxy::Options po;
    po.listen_address = bulwark::supervisor::ip_to_string(launcher->veth().host_addr);
    po.listen_port = bulwark::supervisor::kProxyPort;
    po.agent_init_pid = launcher->pid();
    po.ca = ca;
    po.upstream_ca_file = upstream_ca;
    po.inference_max_request_bytes = static_cast<size_t>(inference_max_request);
    po.transparent = transparent;
    po.transparent_port = bulwark::supervisor::kTransparentPort;
    po.names_for_address = [dns_names](const asio::ip::address& a) { return dns_names->names_for(a); };
    if (inference) {
      po.inference = inference->handler();
      // A request travels as one NATS message.
      po.inference_max_request_bytes = std::min(po.inference_max_request_bytes, inference->max_request_bytes());
    } else {
      po.inference_unavailable_reason = session ? "the supervisor could not subscribe for inference replies on NATS"
                                                : "this sandbox runs without NATS (--standalone), so no "
                                                  "privacy-router can be reached";
    }
    proxy = std::make_unique<bulwark::proxy::EgressProxy>(
        po, compiled, 0, [s = session.get()](const bulwark::proxy::Event& e) {
          bulwark::supervisor::count_decision("proxy", bulwark::supervisor::decision_name(e.allowed, e.audit));
          if (e.allowed && !e.audit) return;
          bulwark::v1::Denial d;
          d.set_layer("proxy");
          d.set_audit(e.audit);
          d.set_binary(e.binary);
          d.set_host(e.host);
          d.set_port(e.port);
          d.set_method(e.method);
          d.set_path(e.path);
          d.set_rule(e.rule);
          d.set_policy_version(e.policy_version);
          d.set_reason(e.reason);
          std::string what = (e.transparent ? "transparent " : "") + e.method + " " + e.host + ":" +
                             std::to_string(e.port) + e.path;
          deny(s, d,
               std::string(e.audit ? "audit: proxy allowed " : "denied: proxy ") + what + " by " +
                   (e.binary.empty() ? "(unidentified)" : e.binary) + " (" + e.rule + ", policy version " +
                   std::to_string(e.policy_version) + ": " + e.reason + ")");
        });
    proxy->run_in_thread();
    if (transparent) {
      bulwark::supervisor::DnsResponder::Options dopts;
      dopts.listen_addr_be = launcher->veth().host_addr;
      dopts.names = dns_names;
      dopts.on_refused = [s = session.get(), version = proxy.get()](const std::string& name, uint16_t qtype) {
        auto ev = denial_of("dns", "no network policy rule names this host, so it is not resolved");
        ev.set_host(name);
        ev.set_policy_version(version->policy_version());
        deny(s, ev, "denied: dns " + name + " (type " + std::to_string(qtype) + "; no network policy rule names it)");
      };
      dns = std::make_unique<bulwark::supervisor::DnsResponder>(dopts, compiled);
    }
    // Landlock reports denials only to the kernel audit log; read our sandbox's share of it.
    // Started before the agent runs, so its first denial is not missed.
    // Inside a container audit can be neither checked nor switched on (that needs the host's
    // PID namespace): the driver switches it on for its sandboxes, so go on and read.
    if (std::string why = bulwark::audit::ensure_enabled(); !why.empty()) {
      if (standalone_flag) audit_problem = why;  // on the host it can: a failure is real
      spdlog::debug("kernel audit: {}", why);
    }
    if (audit_problem.empty()) {
      try {
        landlock_log = std::make_unique<bulwark::supervisor::LandlockAuditLog>(
            launcher->audit_tag(), [s = session.get()](const std::string& line) {
              // "landlock fs.write_file path=..." -> layer landlock, the rest as the reason
              deny(s, denial_of("landlock", line.substr(line.find(' ') + 1)), "denied: " + line);
            });
      } catch (const std::exception& e) {
        audit_problem = e.what();
      }
    }
    denials = std::make_unique<bulwark::supervisor::DenialLog>(
        launcher->pid(), [s = session.get()](const bulwark::supervisor::Denial& d) {
          auto ev = denial_of("network", "only the egress proxy is reachable; " + d.protocol + " to it is refused");
          ev.set_host(d.destination);
          ev.set_port(d.port);
          deny(s, ev, "denied: direct " + d.protocol + " to " + d.destination + (d.port ? ":" + std::to_string(d.port) : "") +
                          " (only the egress proxy is reachable)");
        });
    // Not dumpable from here on: the agent cannot read our memory or /proc/<pid>/environ (where
    // credentials meant for the agent pass through). Not earlier: opening the agent's namespace
    // above needs our /proc entries readable without CAP_SYS_PTRACE, which containers lack.
    prctl(PR_SET_DUMPABLE, 0);
    report = launcher->release(std::move(launch_env));
  } catch (const std::exception& e) {
    spdlog::critical("sandbox {}: confinement failed: {}", sandbox_id, e.what());
    if (session) {
      try {
        session->failed(std::string("confinement failed: ") + e.what());
        session->close();
      } catch (const std::exception&) {
      }
    }
    return kExitConfinement;
  }
  agent_started = true;
  bulwark::supervisor::set_agent_running(true);
  if (!audit_problem.empty()) report.notes.push_back("Landlock denials are not logged: " + audit_problem);
  for (const auto& n : report.notes) spdlog::warn("{}", n);
  spdlog::info("sandbox {}: confined in {:.1f} ms (Landlock ABI {}); running {}", sandbox_id, report.setup_ms,
               report.landlock_abi, command.front());
  // exec, file transfer and connect (docs/exec.md): commands init forks on request; listening
  // before the check-in, since READY tells clients they may exec. With
  // keep_after_exit the agent's end arrives here, and the sandbox stays until it is deleted.
  std::atomic<bool> agent_reported{false};
  std::unique_ptr<bulwark::supervisor::ExecServer> exec;
  try {
    exec = std::make_unique<bulwark::supervisor::ExecServer>(
        launcher->take_control(), bulwark::supervisor::ExecServer::Options{.sandbox_id = sandbox_id},
        [&sandbox_id, &agent_reported, s = session.get()](int code) {
          spdlog::info("sandbox {}: agent exited with code {}; kept for exec until deleted", sandbox_id, code);
          bulwark::supervisor::set_agent_running(false);
          bulwark::supervisor::set_agent_exit_code(code);
          if (!s) return;
          try {
            s->agent_exited(code);
            agent_reported = true;
          } catch (const std::exception& e) {
            spdlog::error("could not report the exit code: {}", e.what());
          }
        });
    if (session) exec->serve(session->bus());
  } catch (const std::exception& e) {
    notice(session.get(), std::string("exec into this sandbox is unavailable: ") + e.what());
  }

  if (session) {
    try {
      session->check_in(report);
    } catch (const std::exception& e) {
      spdlog::error("check-in failed: {}", e.what());
    }
  }

  // Hot reload: new versions of the policy go to the proxy as they are stored.
  std::unique_ptr<bulwark::supervisor::PolicyFollower> follower;
  if (session) {
    follower = std::make_unique<bulwark::supervisor::PolicyFollower>(
        session->bus(), sandbox_id, policy,
        [p = proxy.get(), d = dns.get()](std::shared_ptr<const bulwark::policy::CompiledPolicy> c, uint64_t version) {
          if (d) d->set_policy(c);
          p->set_policy(std::move(c), version);
          bulwark::supervisor::set_policy_version(version);
        });
  }

  std::mutex mu;
  std::condition_variable done;
  // A tty is one stream (the master); pipes are two.
  const bool agent_tty = launcher->tty();
  std::atomic<int> open_relays{agent_tty ? 1 : 2};
  auto out = relay(launcher->take_stdout(), stdout, "stdout", session.get(), open_relays, mu, done, agent_tty);
  std::thread err;
  if (!agent_tty) err = relay(launcher->take_stderr(), stderr, "stderr", session.get(), open_relays, mu, done);
  // The system calls init's seccomp listener refused.
  std::thread events([fd = launcher->take_events(), s = session.get()] {
    bulwark::supervisor::relay_lines(fd.get(), 4096, [&](const std::string& line) {
      const std::string prefix = "denied: seccomp ";
      if (line.rfind(prefix, 0) == 0) deny(s, denial_of("seccomp", line.substr(prefix.size())), line);
      else notice(s, line);
    });
  });

  int code = supervise(launcher->pid());
  bulwark::supervisor::set_agent_running(false);
  bulwark::supervisor::set_agent_exit_code(code);
  {
    // The agent's init ended its PID namespace with it; the pipes close once the kernel has
    // reaped the rest. Wait a moment for the last lines.
    std::unique_lock lock(mu);
    done.wait_for(lock, std::chrono::seconds(2), [&] { return open_relays == 0; });
  }
  out.join();
  if (err.joinable()) err.join();
  events.join();  // init is gone, so its end of the pipe is closed
  exec.reset();  // init is gone: every exec ended with it
  follower.reset();
  denials.reset();
  landlock_log.reset();
  proxy->stop();
  dns.reset();
  redirect.reset();
  inference.reset();  // before the session's connection drains
  spdlog::info("sandbox {}: agent exited with code {}", sandbox_id, code);
  if (session) {
    try {
      if (!agent_reported) session->agent_exited(code);
      session->close();
    } catch (const std::exception& e) {
      spdlog::error("could not report the exit code: {}", e.what());
    }
  }
  return code;
}
