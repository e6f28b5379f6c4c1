// exec into a sandbox run by the real bulwark-supervisor (a real nats-server, as the gateway would
// talk to it): output, exit code, stdin, the timeout, confinement like the agent's, a PTY that
// sees its resize, and keep_after_exit. Needs root, like launch_test.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>

#include "bulwark/v1/exec.pb.h"
#include "bulwark/v1/sandbox.pb.h"
#include "shared/bus.h"
#include "shared/process.h"
#include "shared/subjects.h"
#include "shared/util.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

struct Result {
  std::string out, err;
  std::optional<v1::ExecEnd> end;
  bool started = false;
  bool in_order = true;
};

struct Sandbox {
  testing::NatsServer nats;
  std::unique_ptr<Bus> bus = Bus::connect({nats.url(), "test", 5s});
  testing::TempDir dir{"bulwark-exec"};
  std::string id = "exec-" + std::to_string(::getpid()) + "-" + random_hex(2);
  std::mutex mu;
  std::vector<v1::StateReport> reports;
  Subscription states;
  Process sup;

  explicit Sandbox(const std::string& agent, bool keep = false) {
    bus->ensure_stream(subjects::kSandboxStream, {subjects::kSandboxAll}, std::chrono::seconds(3600));
    states = bus->subscribe(subjects::sandbox_state(id), [this](Msg& m) {
      v1::StateReport r;
      if (!r.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) return;
      std::lock_guard lock(mu);
      reports.push_back(r);
    });
    bus->flush();
    sup = Process::spawn({.argv = {std::string(BULWARK_BIN_DIR) + "/bulwark-supervisor", "--sandbox-id", id, "--nats-url",
                                   nats.url(), "--provider-env", "off", std::string("--keep-after-exit=") + (keep ? "true" : "false"),
                                   "--", "sh", "-c", agent},
                          .output_file = dir.file("out.log")});
    REQUIRE_MESSAGE(testing::wait_until([&] { return has(v1::REPORT_SUPERVISOR_CHECKED_IN); }, 30s), output());
  }
  bool has(v1::ReportKind k) {
    std::lock_guard lock(mu);
    for (const auto& r : reports)
      if (r.kind() == k) return true;
    return false;
  }
  std::string output() {
    std::ifstream f(dir.file("out.log"));
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  // Runs one exec; `inputs` are sent once the started frame arrived, `after_output` once the
  // output contains that text (then its inputs).
  Result exec(v1::ExecRequest req, std::vector<v1::ExecInput> inputs = {}, const std::string& after_output = "",
              std::vector<v1::ExecInput> later = {}) {
    std::string exec_id = "x" + random_hex(6);
    std::string inbox = "_INBOX.exec." + random_hex(8);
    std::mutex rm;
    std::condition_variable cv;
    Result res;
    uint64_t want = 0;
    auto sub = bus->subscribe(inbox, [&](Msg& m) {
      v1::ExecFrame f;
      REQUIRE(f.ParseFromArray(m.data().data(), static_cast<int>(m.data().size())));
      std::lock_guard lock(rm);
      if (f.seq() != want++) res.in_order = false;
      if (f.has_started()) res.started = true;
      if (f.has_output()) (f.output().stream() == 2 ? res.err : res.out) += f.output().data();
      if (f.has_end()) res.end = f.end();
      cv.notify_all();
    });
    bus->flush();
    bus->publish(subjects::exec_start(id, exec_id), inbox, req.SerializeAsString());
    std::unique_lock lock(rm);
    REQUIRE(cv.wait_for(lock, 20s, [&] { return res.started || res.end; }));
    uint64_t seq = 0;
    auto send = [&](std::vector<v1::ExecInput>& ins) {
      for (auto& in : ins) {
        in.set_seq(seq++);
        bus->publish(subjects::exec_input(id, exec_id), in);
      }
    };
    send(inputs);
    if (!after_output.empty()) {
      REQUIRE_MESSAGE(cv.wait_for(lock, 20s, [&] { return res.out.find(after_output) != std::string::npos || res.end; }), res.out);
      send(later);
    }
    REQUIRE_MESSAGE(cv.wait_for(lock, 30s, [&] { return res.end.has_value(); }), res.out, res.err);
    return res;
  }
};

v1::ExecRequest cmd(std::vector<std::string> argv) {
  v1::ExecRequest r;
  for (auto& a : argv) r.add_command(a);
  return r;
}

}  // namespace

TEST_CASE("exec: output, stderr, exit code, stdin, env, and the agent's confinement") {
  Sandbox s("echo agent-up; sleep 1000");
  auto r = s.exec(cmd({"sh", "-c", "echo out; echo err >&2; exit 7"}));
  CHECK(r.in_order);
  CHECK(r.out == "out\n");
  CHECK(r.err == "err\n");
  CHECK(r.end->exit_code() == 7);
  CHECK_FALSE(r.end->timed_out());
  CHECK(r.end->error().empty());

  auto req = cmd({"cat"});
  req.set_stdin("from stdin\n");
  CHECK(s.exec(req).out == "from stdin\n");

  req = cmd({"sh", "-c", "echo $GREETING; pwd"});
  (*req.mutable_env())["GREETING"] = "hello";
  req.set_workdir("/tmp");
  CHECK(s.exec(req).out == "hello\n/tmp\n");

  // The agent's namespaces (hostname, PID namespace), uid, and Landlock: /usr is read-only.
  std::string agent_uid = s.exec(cmd({"sh", "-c", "stat -c %u /proc/1"})).out;
  r = s.exec(cmd({"sh", "-c", "hostname; id -u; echo x > /usr/exec-probe || echo refused"}));
  CHECK(r.out == "sandbox\n" + agent_uid + "refused\n");
  CHECK(r.err.find("ermission denied") != std::string::npos);
  // The agent's seccomp filter: unshare is denied.
  r = s.exec(cmd({"unshare", "-U", "true"}));
  CHECK(r.end->exit_code() != 0);

  r = s.exec(cmd({"no-such-command"}));
  CHECK(r.end->exit_code() == 127);
  CHECK(r.err.find("cannot run 'no-such-command'") != std::string::npos);
}

TEST_CASE("exec: the timeout kills the process group; the output cap truncates") {
  Sandbox s("sleep 1000");
  auto req = cmd({"sh", "-c", "sleep 30 & echo started; wait"});
  req.set_timeout_ms(500);
  auto t0 = std::chrono::steady_clock::now();
  auto r = s.exec(req);
  CHECK(r.end->timed_out());
  CHECK(r.end->exit_code() == 137);
  CHECK(r.out == "started\n");
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  // Nothing of it is left running.
  CHECK(s.exec(cmd({"sh", "-c", "ps -o comm | grep -c '^sleep' || true"})).out == "1\n");  // the agent's only

  req = cmd({"sh", "-c", "head -c 100000 /dev/zero"});
  req.set_max_output_bytes(1000);
  r = s.exec(req);
  CHECK(r.end->truncated());
  CHECK(r.out.size() == 1000);
  CHECK(r.end->exit_code() == 0);
}

TEST_CASE("exec: a PTY session sees its size, and the new one after a resize") {
  Sandbox s("sleep 1000");
  auto req = cmd({"sh", "-c", "stty size; read line; stty size"});
  req.set_tty(true);
  req.set_rows(33);
  req.set_cols(101);
  req.set_stdin_open(true);
  v1::ExecInput resize, enter;
  resize.mutable_resize()->set_rows(40);
  resize.mutable_resize()->set_cols(120);
  enter.set_data("\n");
  auto r = s.exec(req, {}, "33 101", {resize, enter});
  CHECK(r.end->exit_code() == 0);
  CHECK(r.out.find("33 101") != std::string::npos);
  CHECK(r.out.find("40 120") != std::string::npos);
  CHECK(r.err.empty());  // a terminal has one stream
}

TEST_CASE("exec: keep_after_exit reports the agent's end and keeps the sandbox for exec until SIGTERM") {
  Sandbox s("echo bye; exit 3", true);
  REQUIRE_MESSAGE(testing::wait_until([&] { return s.has(v1::REPORT_AGENT_EXITED); }, 20s), s.output());
  {
    std::lock_guard lock(s.mu);
    for (const auto& r : s.reports)
      if (r.kind() == v1::REPORT_AGENT_EXITED) CHECK(r.exit_code() == 3);
  }
  CHECK(s.sup.running());
  auto r = s.exec(cmd({"sh", "-c", "echo still here"}));
  CHECK(r.out == "still here\n");
  s.sup.signal(SIGTERM);
  auto code = s.sup.wait_for(20s);
  REQUIRE(code);
  CHECK(*code == 3);
  int exited = 0;
  std::lock_guard lock(s.mu);
  for (const auto& r2 : s.reports) exited += r2.kind() == v1::REPORT_AGENT_EXITED;
  CHECK(exited == 1);  // reported once
}

TEST_CASE("exec: keep_after_exit with the agent still running: SIGTERM ends the sandbox, not just the agent") {
  Sandbox s("sleep 1000", true);
  s.sup.signal(SIGTERM);
  auto code = s.sup.wait_for(10s);
  REQUIRE(code);
  CHECK(*code == 143);  // the agent's: killed by SIGTERM
}
