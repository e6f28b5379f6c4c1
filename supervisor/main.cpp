// bulwark-supervisor: PID 1 of every sandbox. Checks in with the gateway over NATS, runs the agent
// command, relays its output, forwards signals, reaps every child, and reports the exit code.
// See README.md.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>

#include "shared/log.h"
#include "shared/service.h"
#include "shared/util.h"
#include "supervisor/agent.h"
#include "supervisor/contain.h"
#include "supervisor/session.h"

extern char** environ;

namespace {

constexpr int kExitCannotConnect = 125;  // as `podman run` uses for its own failures
constexpr int kExitCannotStart = 127;

// Signals the supervisor takes synchronously: SIGCHLD to reap, the rest to forward to the agent.
sigset_t handled_signals() {
  sigset_t s;
  sigemptyset(&s);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH}) sigaddset(&s, sig);
  return s;
}

// Waits for SIGCHLD and forwards everything else to the agent's process group until the agent is
// reaped. Orphans reparented to us (we are PID 1 or a subreaper) are reaped on the way.
int supervise(pid_t agent) {
  sigset_t set = handled_signals();
  for (;;) {
    siginfo_t info;
    int sig = sigwaitinfo(&set, &info);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      spdlog::info("forwarding {} to the agent", strsignal(sig));
      kill(-agent, sig);
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

// Relays one pipe to our own stream (so `podman logs` has it) and to the gateway.
std::thread relay(bulwark::Fd fd, FILE* echo, const char* stream, bulwark::supervisor::Session& session,
                  std::atomic<int>& open_relays, std::condition_variable& done) {
  return std::thread([fd = std::move(fd), echo, stream, &session, &open_relays, &done]() mutable {
    bulwark::supervisor::relay_lines(fd.get(), 16 * 1024, [&](const std::string& line) {
      std::fprintf(echo, "%s\n", line.c_str());
      std::fflush(echo);
      session.log_line(stream, line);
    });
    --open_relays;
    done.notify_all();
  });
}

}  // namespace

int main(int argc, char** argv) {
  bulwark::Flags flags("bulwark-supervisor", "runs one sandbox's agent command under Bulwark's control");
  bulwark::CommonOptions common;
  bulwark::add_common_options(flags, common);
  std::string sandbox_id;
  std::vector<std::string> command;
  flags.text("sandbox-id", &sandbox_id, "this sandbox's id").rest("command", &command, "the agent command, after --", true);
  if (int rc = flags.parse(argc, argv); rc >= 0) return rc;
  if (!bulwark::is_subject_token(sandbox_id)) {
    std::cerr << "bulwark-supervisor: --sandbox-id (BULWARK_SANDBOX_ID) must be set to a valid sandbox id\n";
    return 2;
  }
  try {
    bulwark::init_logging("supervisor", bulwark::parse_log_format(common.log_format), common.log_level);
  } catch (const bulwark::Error& e) {
    std::cerr << "bulwark-supervisor: " << e.what() << "\n";
    return 2;
  }

  sigset_t set = handled_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread exists, so all inherit it
  signal(SIGPIPE, SIG_IGN);
  if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1);  // standalone: orphans still come to us

  std::unique_ptr<bulwark::supervisor::Session> session;
  try {
    session = std::make_unique<bulwark::supervisor::Session>(
        common.nats_url, sandbox_id, std::chrono::milliseconds(static_cast<int64_t>(common.nats_connect_timeout_s * 1000)));
    session->check_in();
  } catch (const std::exception& e) {
    spdlog::critical("sandbox {}: cannot reach the gateway session: {}", sandbox_id, e.what());
    return kExitCannotConnect;
  }
  spdlog::info("sandbox {}: checked in; starting {}", sandbox_id, command.front());

  bulwark::Process agent;
  try {
    agent = bulwark::supervisor::start_agent({command, bulwark::supervisor::agent_environment(environ)});
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    session->failed(e.what());
    session->close();
    return kExitCannotStart;
  }
  std::mutex mu;
  std::condition_variable done;
  std::atomic<int> open_relays{2};
  auto out = relay(agent.take_stdout(), stdout, "stdout", *session, open_relays, done);
  auto err = relay(agent.take_stderr(), stderr, "stderr", *session, open_relays, done);
  pid_t pid = agent.release();

  int code = supervise(pid);
  {
    // The agent is gone; its own children may still hold the pipes. Give them a moment, then end them.
    std::unique_lock lock(mu);
    if (!done.wait_for(lock, std::chrono::seconds(2), [&] { return open_relays == 0; })) kill(-pid, SIGKILL);
  }
  out.join();
  err.join();
  spdlog::info("sandbox {}: agent exited with code {}", sandbox_id, code);
  try {
    session->agent_exited(code);
    session->close();
  } catch (const std::exception& e) {
    spdlog::error("could not report the exit code: {}", e.what());
  }
  return code;
}
