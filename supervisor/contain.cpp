#include "supervisor/contain.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <linux/close_range.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>

#include "shared/error.h"
#include "shared/util.h"
#include "supervisor/agent.h"
#include "supervisor/firewall.h"
#include "supervisor/identity.h"
#include "supervisor/landlock.h"
#include "supervisor/mounts.h"
#include "supervisor/exec_control.h"
#include "supervisor/seccomp.h"

namespace bulwark::supervisor {

// The agent's environment sent over the release pipe: far above any real one, and a bound on what
// init reads.
constexpr size_t kMaxEnvBlock = 4 << 20;

policy::FilesystemPolicy default_filesystem_policy() {
  policy::FilesystemPolicy fs;
  fs.include_workdir = true;
  fs.read_only = {"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/dev/urandom", "/dev/zero", "/app", "/var/log"};
  fs.read_write = {"/tmp", "/dev/null"};
  return fs;
}

std::vector<std::string> with_proxy_env(std::vector<std::string> env, const std::string& proxy_url) {
  const std::vector<std::pair<std::string, std::string>> vars = {
      {"HTTP_PROXY", proxy_url}, {"HTTPS_PROXY", proxy_url}, {"ALL_PROXY", proxy_url},
      {"http_proxy", proxy_url}, {"https_proxy", proxy_url}, {"all_proxy", proxy_url},
      {"NO_PROXY", "localhost,127.0.0.1"}, {"no_proxy", "localhost,127.0.0.1"}};
  for (const auto& [k, v] : vars) {
    std::erase_if(env, [&](const std::string& e) { return e.rfind(k + "=", 0) == 0; });
    env.push_back(k + "=" + v);
  }
  // The usual CA variables, so every TLS stack finds the same trust store (the image's bundle;
  // the live network policy work points them at a bundle that adds the sandbox's own CA). A
  // value the caller set wins.
  for (const char* bundle : {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"}) {
    if (::access(bundle, R_OK) != 0) continue;
    for (const char* k : {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO"}) {
      std::string key = std::string(k) + "=";
      if (std::none_of(env.begin(), env.end(), [&](const std::string& e) { return e.rfind(key, 0) == 0; }))
        env.push_back(key + bundle);
    }
    break;
  }
  return env;
}

namespace {

// The child reports on a pipe: "note TEXT", "abi N", or "error STEP: TEXT"; EOF = exec'd.
void report_line(int fd, const std::string& line) {
  std::string l = line + "\n";
  (void)!::write(fd, l.data(), l.size());
}

[[noreturn]] void fail_step(int report_fd, const std::string& step, const std::string& what) {
  report_line(report_fd, "error " + step + ": " + what);
  ::_exit(126);
}

template <class F>
void step(int report_fd, const std::string& name, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    fail_step(report_fd, name, e.what());
  }
}

void sys(bool ok, const std::string& what) {
  if (!ok) throw Error(Code::kInternal, errno_text(what, errno));
}

// Denials init saw, for the supervisor's log: one line each on a non-blocking pipe, at most
// kBurst a second. An agent hammering a denied call must neither block on init (its calls wait
// for init's answer) nor fill the supervisor's log: the excess is counted and reported.
class EventOut {
 public:
  explicit EventOut(int fd) : fd_(fd) {}
  void line(const std::string& text) {
    auto now = std::chrono::steady_clock::now();
    if (now - window_ >= std::chrono::seconds(1)) {
      if (dropped_ > 0) write_now("seccomp: " + std::to_string(dropped_) + " more denials not logged (rate limit)");
      window_ = now;
      sent_ = dropped_ = 0;
    }
    if (sent_ >= kBurst) {
      ++dropped_;
      return;
    }
    ++sent_;
    write_now(text);
  }

 private:
  static constexpr int kBurst = 50;
  void write_now(const std::string& text) {
    std::string l = text + "\n";
    if (::write(fd_, l.data(), l.size()) != static_cast<ssize_t>(l.size())) ++dropped_;  // full pipe: drop
  }
  int fd_;
  std::chrono::steady_clock::time_point window_{};
  int sent_ = 0, dropped_ = 0;
};

// What init keeps while it runs: the agent, the exec children and every seccomp listener.
struct InitState {
  pid_t agent = -1;
  bool agent_alive = true;
  int agent_code = 0;
  bool keep_after_exit = false;
  int control = -1;  // the exec control channel; -1 once the supervisor closed it
  std::vector<std::string> env;  // the agent's environment, the base of every exec's
  std::string workdir;
  std::map<pid_t, uint64_t> execs;  // exec child -> its id
  std::vector<std::unique_ptr<SeccompListener>> listeners;
};

void control_send(InitState& st, const std::vector<std::string>& fields) {
  if (st.control < 0) return;
  try {
    send_packet(st.control, join_fields(fields));
  } catch (const std::exception&) {
    st.control = -1;  // the supervisor is gone: PDEATHSIG ends us shortly
  }
}

// Forks one exec child the way the agent was forked: same confinement (inherited), its own
// session (and a controlling terminal when it has a tty), the same seccomp filter with its
// listener handed to init. Its failures before exec go to its stderr, as a shell's would.
void spawn_exec(InitState& st, const SpawnRequest& r, std::vector<Fd>& fds, EventOut& events) {
  if (fds.size() != (r.tty ? 1u : 3u)) {
    events.line("exec: spawn request with " + std::to_string(fds.size()) + " descriptors, ignored");
    control_send(st, {"exited", std::to_string(r.id), "126"});
    return;
  }
  auto env = merge_env(st.env, r.env);
  std::vector<char*> argv, envp;
  for (const auto& a : r.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const std::string& workdir = r.workdir.empty() ? st.workdir : r.workdir;
  int lsock[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, lsock) != 0) {
    events.line(errno_text("exec: socketpair", errno));
    control_send(st, {"exited", std::to_string(r.id), "126"});
    return;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (r.tty) {
      int t = fds[0].get();
      (void)::ioctl(t, TIOCSCTTY, 0);
      ::dup2(t, 0);
      ::dup2(t, 1);
      ::dup2(t, 2);
    } else {
      ::dup2(fds[0].get(), 0);
      ::dup2(fds[1].get(), 1);
      ::dup2(fds[2].get(), 2);
    }
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    if (::chdir(workdir.c_str()) != 0) {
      if (!r.workdir.empty()) {
        ::dprintf(2, "bulwark exec: cannot enter workdir %s: %s\n", workdir.c_str(), std::strerror(errno));
        ::_exit(126);
      }
      (void)!::chdir("/");
    }
    try {
      ::close(lsock[0]);
      Fd listener = seccomp_apply(SeccompOptions{.notify = true});
      send_fd(lsock[1], listener.get());
    } catch (const std::exception& e) {
      ::dprintf(2, "bulwark exec: seccomp: %s\n", e.what());
      ::_exit(126);
    }
    ::close(lsock[1]);
    for (const auto& e : env)
      if (e.rfind("PATH=", 0) == 0) ::setenv("PATH", e.c_str() + 5, 1);
    ::execvpe(argv[0], argv.data(), envp.data());
    int e = errno;
    ::dprintf(2, "bulwark exec: cannot run '%s': %s\n", argv[0], std::strerror(e));
    // As a shell: 127 when nothing runnable was found on the PATH (a PATH directory Landlock
    // hides gives EACCES there), 126 when a file was found but cannot run.
    bool searched = std::strchr(argv[0], '/') == nullptr;
    ::_exit(e == ENOENT || (searched && e == EACCES) ? 127 : 126);
  }
  ::close(lsock[1]);
  fds.clear();  // only the child holds them now: EOF reaches the supervisor when it ends
  if (pid < 0) {
    events.line(errno_text("exec: fork", errno));
    ::close(lsock[0]);
    control_send(st, {"exited", std::to_string(r.id), "126"});
    return;
  }
  st.execs[pid] = r.id;
  control_send(st, {"started", std::to_string(r.id), std::to_string(pid)});
  try {
    st.listeners.push_back(std::make_unique<SeccompListener>(receive_fd(lsock[0])));
  } catch (const std::exception&) {
    // It failed before loading its filter and said why on its stderr.
  }
  ::close(lsock[0]);
}

void on_control(InitState& st, EventOut& events) {
  std::vector<Fd> fds;
  std::string packet;
  try {
    packet = recv_packet(st.control, &fds);
  } catch (const std::exception& e) {
    events.line(std::string("exec control: ") + e.what());
    return;
  }
  if (packet.empty()) {
    st.control = -1;
    return;
  }
  try {
    auto f = split_fields(packet);
    if (f[0] == "spawn") {
      spawn_exec(st, decode_spawn(f), fds, events);
    } else if (f[0] == "kill" && f.size() == 3) {
      uint64_t id = parse_u64(f[1], "id");
      int sig = static_cast<int>(parse_u64(f[2], "signal"));
      for (const auto& [pid, eid] : st.execs)
        if (eid == id) ::kill(-pid, sig);
    } else {
      events.line("exec control: unknown request '" + f[0] + "'");
    }
  } catch (const std::exception& e) {
    events.line(std::string("exec control: ") + e.what());
  }
}

// pid 1 of the agent's PID namespace: reaps everything, relays the supervisor's signals to the
// agent's process group, answers the denied system calls of the agent and its exec children
// (seccomp listeners), forks exec children on request, and exits with the agent's code (which
// ends the whole namespace) - or, with keep_after_exit, reports that code and stays until told
// to stop.
[[noreturn]] void init_loop(InitState& st, EventOut& events) {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH}) sigaddset(&set, sig);
  Fd sigfd(::signalfd(-1, &set, SFD_CLOEXEC));
  if (!sigfd) ::_exit(126);
  int failures = 0;
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({sigfd.get(), POLLIN, 0});
    fds.push_back({st.control, POLLIN, 0});
    for (const auto& l : st.listeners) fds.push_back({l->fd(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) continue;
    // Listeners first, then the control channel: both may change st.listeners.
    std::vector<SeccompListener*> gone;
    for (size_t i = 2; i < fds.size(); ++i) {
      SeccompListener* l = st.listeners[i - 2].get();
      if (fds[i].revents & (POLLHUP | POLLERR | POLLNVAL)) {
        gone.push_back(l);  // every task with that filter is gone
      } else if (fds[i].revents & POLLIN) {
        try {
          if (auto d = l->answer_one()) events.line("denied: " + d->to_string());
          failures = 0;
        } catch (const std::exception& e) {
          // One failure is a caller's race; only a listener that keeps failing is given up (its
          // callers then get ENOSYS), so that init does not spin.
          events.line(std::string("seccomp listener: ") + e.what());
          if (++failures >= 100) {
            events.line("seccomp listener failed 100 times in a row: denied calls now fail with ENOSYS");
            gone.push_back(l);
            failures = 0;
          }
        }
      }
    }
    std::erase_if(st.listeners, [&](const auto& l) { return std::find(gone.begin(), gone.end(), l.get()) != gone.end(); });
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) on_control(st, events);
    if (!(fds[0].revents & POLLIN)) continue;
    signalfd_siginfo info;
    if (::read(sigfd.get(), &info, sizeof info) != sizeof info) continue;
    int sig = static_cast<int>(info.ssi_signo);
    if (sig != SIGCHLD) {
      // A stop (the sandbox is deleted) while the agent still runs: once it ends, init ends too.
      if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT) st.keep_after_exit = false;
      if (st.agent_alive) ::kill(-st.agent, sig);
      else if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT) ::_exit(st.agent_code);  // deleted
      continue;
    }
    for (;;) {
      int status = 0;
      pid_t p = ::waitpid(-1, &status, WNOHANG);
      if (p <= 0) break;
      if (p == st.agent && st.agent_alive) {
        if (!st.keep_after_exit) ::_exit(exit_code_of(status));
        st.agent_alive = false;
        st.agent_code = exit_code_of(status);
        control_send(st, {"agent", std::to_string(st.agent_code)});
      } else if (auto it = st.execs.find(p); it != st.execs.end()) {
        control_send(st, {"exited", std::to_string(it->second), std::to_string(exit_code_of(status))});
        st.execs.erase(it);
      }
    }
  }
}

[[noreturn]] void agent_init(const ContainOptions& o, const VethPlan& veth, const std::string& audit_tag, int go_fd,
                             int report_fd, int out_fd, int err_fd, int events_fd, int control_fd) {
  char go = 0;
  if (::read(go_fd, &go, 1) != 1) ::_exit(125);  // the supervisor went away before releasing us
  // After the go byte, maybe a new environment for the agent: NUL-terminated "K=V" entries up to EOF.
  std::string env_block;
  step(report_fd, "environment", [&] {
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(go_fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) sys(false, "read the agent's environment");
      if (n == 0) break;
      env_block.append(buf, static_cast<size_t>(n));
      if (env_block.size() > kMaxEnvBlock) throw Error(Code::kInvalidArgument, "the agent's environment is too large");
    }
    if (!env_block.empty() && env_block.back() != '\0')
      throw Error(Code::kInvalidArgument, "the agent's environment arrived cut short");
  });
  ::close(go_fd);
  std::vector<std::string> agent_env = o.env;
  if (!env_block.empty()) {
    agent_env.clear();
    for (size_t at = 0; at < env_block.size();) {
      size_t nul = env_block.find('\0', at);
      agent_env.push_back(env_block.substr(at, nul - at));
      at = nul + 1;
    }
  }

  step(report_fd, "network", [&] {
    configure_agent_side(veth);
    add_default_route(veth.host_addr);
    disable_ipv6();
    apply_agent_firewall(veth.host_addr, kProxyPort, o.transparent);
  });
  step(report_fd, "mounts", [&] {
    sys(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0, "make / private");
    // The host's /tmp, /run and /dev/shm (and their unix sockets) out of sight; the policy's
    // paths beneath them stay.
    const auto& fs = o.policy.has_filesystem ? o.policy.filesystem : default_filesystem_policy();
    std::vector<std::string> keep = fs.read_only;
    keep.insert(keep.end(), fs.read_write.begin(), fs.read_write.end());
    keep.insert(keep.end(), o.extra_read_only.begin(), o.extra_read_only.end());
    if (fs.include_workdir) keep.push_back(o.workdir);
    hide_shared_dirs(keep);
    if (!o.resolv_conf.empty()) {
      // The agent asks the supervisor's DNS responder, whatever the image's resolver is. A
      // resolv.conf that is a symlink into a directory covered above (/run) cannot be bound:
      // the step then fails saying so.
      sys(::mount(o.resolv_conf.c_str(), "/etc/resolv.conf", nullptr, MS_BIND, nullptr) == 0,
          "bind the sandbox's resolv.conf over /etc/resolv.conf");
      sys(::mount(nullptr, "/etc/resolv.conf", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) == 0,
          "make /etc/resolv.conf read-only");
    }
    sys(::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0, "mount /proc for the agent's PID namespace");
    sys(::sethostname("sandbox", 7) == 0, "sethostname");
  });

  LandlockPlan landlock;
  step(report_fd, "landlock: prepare", [&] {
    const auto& fs = o.policy.has_filesystem ? o.policy.filesystem : default_filesystem_policy();
    LandlockRules rules{fs.read_only, fs.read_write, o.policy.landlock == policy::LandlockCompatibility::kHardRequirement,
                        /*audit_denials=*/true};
    if (fs.include_workdir) rules.read_write.push_back(o.workdir);
    rules.read_only.insert(rules.read_only.end(), o.extra_read_only.begin(), o.extra_read_only.end());
    landlock = landlock_prepare(rules);
  });

  Identity id{};
  step(report_fd, "identity", [&] {
    id = resolve_identity(o.policy.process.run_as_user, o.policy.process.run_as_group);
    rlimit nproc{o.nproc_limit, o.nproc_limit};
    sys(::setrlimit(RLIMIT_NPROC, &nproc) == 0, "setrlimit RLIMIT_NPROC");
    drop_identity(id);
    // Init holds the seccomp listener and runs without a filter: the agent (same uid) must not
    // reach its memory or descriptors, whatever fs.suid_dumpable says.
    sys(::prctl(PR_SET_DUMPABLE, 0) == 0, "prctl PR_SET_DUMPABLE");
    // Changing uid clears the parent-death signal: set it again, or a killed supervisor would
    // leave init and the agent running on a bare host.
    sys(::prctl(PR_SET_PDEATHSIG, SIGKILL) == 0, "prctl PR_SET_PDEATHSIG");
  });
  step(report_fd, "no_new_privs", [&] { sys(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "prctl PR_SET_NO_NEW_PRIVS"); });
  step(report_fd, "landlock: restrict_self", [&] {
    // The kernel's audit record of this domain names the process that made it: a tag unique to
    // this sandbox lets the supervisor pick its own denials out of the host's audit stream.
    sys(::prctl(PR_SET_NAME, audit_tag.c_str()) == 0, "prctl PR_SET_NAME");
    landlock_enforce(landlock);
    ::prctl(PR_SET_NAME, "bulwark-init");
  });
  // seccomp goes on the agent only (below): init must stay free of it to answer its listener.
  int listener_sock[2];
  step(report_fd, "seccomp", [&] {
    sys(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, listener_sock) == 0, "socketpair");
  });

  report_line(report_fd, "abi " + std::to_string(landlock.abi));
  for (const auto& s : landlock.skipped) report_line(report_fd, "note landlock skipped " + s);
  for (const auto& s : landlock.unenforced) report_line(report_fd, "note landlock cannot enforce " + s);

  std::vector<char*> argv, envp;
  for (const auto& a : o.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : agent_env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  pid_t agent = ::fork();
  if (agent < 0) fail_step(report_fd, "fork the agent", errno_text("fork", errno));
  if (agent == 0) {
    // A new session: no controlling terminal, so no TIOCSTI into the operator's terminal; also
    // the agent's own process group for the signals init relays.
    ::setsid();
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (o.tty) {
      // The pseudo-terminal's slave is all three streams and the controlling terminal (isatty,
      // job control, SIGWINCH), as `podman run -t` would give.
      if (::ioctl(out_fd, TIOCSCTTY, 0) != 0) fail_step(report_fd, "tty", errno_text("TIOCSCTTY", errno));
      ::dup2(out_fd, 0);
    }
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    // Nothing the supervisor itself inherited (a CI runner's descriptors...) reaches the agent.
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    if (::chdir(o.workdir.c_str()) != 0) (void)!::chdir("/");
    // Last step before exec, in the agent's own process: from here every denied call waits for
    // init's answer, so the listener must be with init first.
    step(report_fd, "seccomp", [&] {
      ::close(listener_sock[0]);
      Fd listener = seccomp_apply(SeccompOptions{.notify = true});
      send_fd(listener_sock[1], listener.get());
    });
    ::close(listener_sock[1]);
    // execvpe searches PATH from the agent's environment.
    for (const auto& e : agent_env)
      if (e.rfind("PATH=", 0) == 0) ::setenv("PATH", e.c_str() + 5, 1);
    ::execvpe(argv[0], argv.data(), envp.data());
    fail_step(report_fd, "exec", errno_text("cannot run '" + o.command[0] + "'", errno));
  }
  ::close(report_fd);
  ::close(out_fd);
  ::close(err_fd);
  ::close(listener_sock[1]);
  InitState st;
  st.agent = agent;
  st.keep_after_exit = o.keep_after_exit;
  st.control = control_fd;
  st.env = agent_env;
  st.workdir = o.workdir;
  try {
    st.listeners.push_back(std::make_unique<SeccompListener>(receive_fd(listener_sock[0])));
  } catch (const std::exception&) {
    // The agent failed before loading its filter and says why on the report pipe; just reap it.
  }
  ::close(listener_sock[0]);
  EventOut events(events_fd);
  init_loop(st, events);
}

void make_pipe(int fds[2], int flags = O_CLOEXEC) {
  if (::pipe2(fds, flags) != 0) throw Error(Code::kInternal, errno_text("pipe2", errno));
}

}  // namespace

AgentLauncher::AgentLauncher(ContainOptions o) : o_(std::move(o)), started_(std::chrono::steady_clock::now()) {
  veth_ = plan_veth(o_.sandbox_id);
  o_.env = with_proxy_env(std::move(o_.env), proxy_url());
  audit_tag_ = "bw-" + random_hex(6);  // 15 characters: the most a comm holds
  int go[2], report[2], out[2], err[2], events[2], control[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, control) != 0)
    throw Error(Code::kInternal, errno_text("socketpair for the exec control channel", errno));
  control_.reset(control[0]);
  make_pipe(go);
  make_pipe(report);
  if (o_.tty) {
    // The slave takes the place of both output pipes' write ends; the master is read like them.
    Pty pty = open_pty(24, 80);
    Fd slave_err(::fcntl(pty.slave.get(), F_DUPFD_CLOEXEC, 0));  // stderr: the same slave
    if (!slave_err) throw Error(Code::kInternal, errno_text("dup the pseudo-terminal", errno));
    out[0] = pty.master.release();
    out[1] = pty.slave.release();
    err[0] = -1;
    err[1] = slave_err.release();
  } else {
    make_pipe(out);
    make_pipe(err);
  }
  make_pipe(events, O_CLOEXEC | O_NONBLOCK);  // init must never block on it
  // Like fork (no CLONE_VM), with new namespaces. The raw syscall: glibc's clone() wants a stack.
  long pid = ::syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD,
                       nullptr, nullptr, nullptr, nullptr);
  if (pid < 0) {
    int e = errno;
    for (int fd : {go[0], go[1], report[0], report[1], out[0], out[1], err[0], err[1], events[0], events[1], control[1]}) ::close(fd);
    throw Error(Code::kInternal, errno_text("clone the agent into new namespaces (needs CAP_SYS_ADMIN)", e));
  }
  if (pid == 0) {
    ::close(go[1]);
    ::close(report[0]);
    ::close(out[0]);
    ::close(err[0]);
    ::close(events[0]);
    control_.reset();
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // no agent outlives its supervisor
    agent_init(o_, veth_, audit_tag_, go[0], report[1], out[1], err[1], events[1], control[1]);
  }
  pid_ = static_cast<pid_t>(pid);
  ::close(go[0]);
  ::close(report[1]);
  ::close(out[1]);
  ::close(err[1]);
  ::close(events[1]);
  ::close(control[1]);
  // The supervisor reads it blocking, in a thread of its own.
  ::fcntl(events[0], F_SETFL, ::fcntl(events[0], F_GETFL) & ~O_NONBLOCK);
  events_.reset(events[0]);
  go_.reset(go[1]);
  report_.reset(report[0]);
  out_.reset(out[0]);
  err_.reset(err[0]);
}

AgentLauncher::~AgentLauncher() {
  if (network_up_) delete_veth(veth_.host_if);
}

std::string AgentLauncher::proxy_url() const { return "http://" + ip_to_string(veth_.host_addr) + ":" + std::to_string(kProxyPort); }

void AgentLauncher::setup_network() {
  create_veth(veth_, pid_);
  network_up_ = true;
}

ContainReport AgentLauncher::release(std::optional<std::vector<std::string>> env) {
  std::string go = "g";
  if (env) {
    for (const auto& e : *env) {
      if (e.find('\0') != std::string::npos || e.find('=') == std::string::npos)
        throw Error(Code::kInvalidArgument, "an entry of the agent's environment is not NAME=value");
      go.append(e).push_back('\0');
    }
    if (go.size() > kMaxEnvBlock) throw Error(Code::kInvalidArgument, "the agent's environment is too large");
  }
  // Init reads while we write (the block may exceed the pipe's buffer); EOF ends it.
  for (std::string_view rest = go; !rest.empty();) {
    ssize_t n = ::write(go_.get(), rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(Code::kInternal, errno_text("release the agent", errno));
    rest.remove_prefix(static_cast<size_t>(n));
  }
  go_.reset();
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(report_.get(), buf, sizeof buf)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ContainReport r;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("error ", 0) == 0) throw Error(Code::kFailedPrecondition, line.substr(6));
    if (line.rfind("abi ", 0) == 0) r.landlock_abi = std::stoi(line.substr(4));
    if (line.rfind("note ", 0) == 0) r.notes.push_back(line.substr(5));
  }
  if (text.empty()) throw Error(Code::kInternal, "the agent's init exited before reporting");
  r.setup_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_).count();
  return r;
}

}  // namespace bulwark::supervisor
