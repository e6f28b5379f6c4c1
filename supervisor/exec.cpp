#include "supervisor/exec.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>

#include "shared/error.h"
#include "shared/subjects.h"
#include "shared/util.h"
#include "supervisor/exec_control.h"

namespace bulwark::supervisor {

namespace {
using Clock = std::chrono::steady_clock;
constexpr size_t kChunk = 64 * 1024;       // bytes per output frame
constexpr uint64_t kMaxStdin = 1ull << 30;  // buffered, not yet written stdin of one exec

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

void pipe_pair(Fd& r, Fd& w) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw Error(Code::kUnavailable, errno_text("pipe2", errno));
  r.reset(p[0]);
  w.reset(p[1]);
}

void set_size(int master, uint32_t rows, uint32_t cols) {
  if (rows == 0 || cols == 0) return;
  winsize ws{};
  ws.ws_row = static_cast<unsigned short>(std::min<uint32_t>(rows, 65535));
  ws.ws_col = static_cast<unsigned short>(std::min<uint32_t>(cols, 65535));
  ::ioctl(master, TIOCSWINSZ, &ws);  // the kernel sends SIGWINCH to the foreground group
}
}  // namespace

struct ExecServer::Run {
  uint64_t id = 0;
  v1::ExecRequest req;
  Sink sink;
  Fd in_w, out_r, err_r, master;  // master: tty only (stdin and output both)
  Fd wake_r, wake_w;
  std::mutex mu;
  std::deque<v1::ExecInput> inputs;
  std::optional<int> exit_code;
  std::string error;  // set when init vanished or input was lost
  std::thread thread;
  std::atomic<bool> finished{false};

  void wake() { (void)!::write(wake_w.get(), "w", 1); }
};

ExecServer::ExecServer(Fd control, Options o, std::function<void(int)> on_agent_exit)
    : o_(std::move(o)), on_agent_exit_(std::move(on_agent_exit)), control_(std::move(control)) {
  reader_ = std::thread([this] { reader(); });
}

ExecServer::~ExecServer() {
  sub_ = Subscription();  // no new requests
  std::vector<std::shared_ptr<Run>> runs;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, r] : runs_) runs.push_back(r);
  }
  for (auto& r : runs) {
    if (!r->finished) {
      try {
        send_control(join_fields({"kill", std::to_string(r->id), std::to_string(SIGKILL)}));
      } catch (const std::exception&) {
      }
    }
  }
  for (auto& r : runs) {
    {
      std::lock_guard lock(r->mu);
      if (!r->exit_code) {
        r->exit_code = 137;
        r->error = "the supervisor is stopping";
      }
    }
    r->wake();
    if (r->thread.joinable()) r->thread.join();
  }
  ::shutdown(control_.get(), SHUT_RDWR);  // the reader's recv returns 0
  if (reader_.joinable()) reader_.join();
}

size_t ExecServer::running() const {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(std::count_if(runs_.begin(), runs_.end(), [](const auto& kv) { return !kv.second->finished; }));
}

void ExecServer::send_control(const std::string& packet, const std::vector<int>& fds) {
  std::lock_guard lock(send_mu_);
  send_packet(control_.get(), packet, fds);
}

// Init's answers: exit codes of exec children, and the agent's own end (keep_after_exit).
void ExecServer::reader() {
  for (;;) {
    std::string packet;
    try {
      packet = recv_packet(control_.get());
    } catch (const std::exception& e) {
      spdlog::error("exec control: {}", e.what());
    }
    if (packet.empty()) break;
    try {
      auto f = split_fields(packet);
      if (f[0] == "exited" && f.size() == 3) {
        std::shared_ptr<Run> r;
        {
          std::lock_guard lock(mu_);
          if (auto it = runs_.find(parse_u64(f[1], "id")); it != runs_.end()) r = it->second;
        }
        if (!r) continue;
        {
          std::lock_guard lock(r->mu);
          r->exit_code = static_cast<int>(parse_u64(f[2], "code"));
        }
        r->wake();
      } else if (f[0] == "agent" && f.size() == 2) {
        if (on_agent_exit_) on_agent_exit_(static_cast<int>(parse_u64(f[1], "code")));
      }
    } catch (const std::exception& e) {
      spdlog::error("exec control: {}", e.what());
    }
  }
  // Init is gone (the sandbox ends): nothing it ran reports any more.
  init_gone_ = true;
  std::lock_guard lock(mu_);
  for (auto& [id, r] : runs_) {
    {
      std::lock_guard rl(r->mu);
      if (!r->exit_code) {
        r->exit_code = 137;
        r->error = "the sandbox ended while the command ran";
      }
    }
    r->wake();
  }
}

void ExecServer::start(const v1::ExecRequest& req, Sink sink) {
  auto refuse = [&](const std::string& why, int code) {
    v1::ExecFrame f;
    f.set_seq(0);
    f.mutable_end()->set_exit_code(code);
    f.mutable_end()->set_error(why);
    sink(f);
  };
  if (req.command().empty()) return refuse("command: required", 126);
  if (init_gone_) return refuse("the sandbox has ended: nothing more can run in it", 126);
  auto r = std::make_shared<Run>();
  r->req = req;
  r->sink = std::move(sink);
  SpawnRequest sp;
  sp.tty = req.tty();
  sp.workdir = req.workdir();
  sp.argv.assign(req.command().begin(), req.command().end());
  for (const auto& [k, v] : req.env()) sp.env.push_back(k + "=" + v);
  std::sort(sp.env.begin(), sp.env.end());
  std::vector<Fd> child;  // the child's ends, closed here once init has them
  std::string packet;
  try {
    for (const auto& [k, v] : req.env())
      if (k.empty() || k.find('=') != std::string::npos) throw Error(Code::kInvalidArgument, "env: bad variable name '" + k + "'");
    pipe_pair(r->wake_r, r->wake_w);
    set_nonblocking(r->wake_r.get());
    set_nonblocking(r->wake_w.get());
    if (req.tty()) {
      r->master.reset(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
      if (!r->master || ::grantpt(r->master.get()) != 0 || ::unlockpt(r->master.get()) != 0)
        throw Error(Code::kUnavailable, errno_text("open a pseudo-terminal", errno));
      char name[128];
      if (::ptsname_r(r->master.get(), name, sizeof name) != 0) throw Error(Code::kInternal, errno_text("ptsname", errno));
      Fd slave(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
      if (!slave) throw Error(Code::kInternal, errno_text(std::string("open ") + name, errno));
      set_size(r->master.get(), req.rows() ? req.rows() : 24, req.cols() ? req.cols() : 80);
      set_nonblocking(r->master.get());
      child.push_back(std::move(slave));
    } else {
      Fd in_r, out_w, err_w;
      pipe_pair(in_r, r->in_w);
      pipe_pair(r->out_r, out_w);
      pipe_pair(r->err_r, err_w);
      set_nonblocking(r->in_w.get());
      set_nonblocking(r->out_r.get());
      set_nonblocking(r->err_r.get());
      child.push_back(std::move(in_r));
      child.push_back(std::move(out_w));
      child.push_back(std::move(err_w));
    }
    std::lock_guard lock(mu_);
    // Reap the threads of finished execs.
    for (auto it = runs_.begin(); it != runs_.end();) {
      if (it->second->finished) {
        if (it->second->thread.joinable()) it->second->thread.join();
        it = runs_.erase(it);
      } else {
        ++it;
      }
    }
    if (runs_.size() >= o_.max_running)
      throw Error(Code::kUnavailable, "too many execs running in this sandbox (at most " + std::to_string(o_.max_running) + ")");
    r->id = sp.id = next_id_++;
    packet = encode_spawn(sp);
    runs_[r->id] = r;
  } catch (const std::exception& e) {
    return refuse(e.what(), 126);
  }
  std::vector<int> fds;
  for (const auto& f : child) fds.push_back(f.get());
  try {
    send_control(packet, fds);
  } catch (const std::exception& e) {
    std::lock_guard lock(mu_);
    runs_.erase(r->id);
    return refuse(std::string("cannot reach the sandbox's init: ") + e.what(), 126);
  }
  child.clear();
  r->thread = std::thread([this, r] { run(r); });
}

void ExecServer::input(const std::string& exec_id, const v1::ExecInput& in) {
  std::shared_ptr<Run> r;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, run] : runs_)
      if (run->req.exec_id() == exec_id && !run->finished) r = run;
  }
  if (!r) return;
  {
    std::lock_guard lock(r->mu);
    r->inputs.push_back(in);
  }
  r->wake();
}

void ExecServer::run(std::shared_ptr<Run> r) {
  const auto started = Clock::now();
  uint64_t seq = 0;
  auto emit = [&](v1::ExecFrame& f) {
    f.set_seq(seq++);
    try {
      r->sink(f);
    } catch (const std::exception& e) {
      spdlog::warn("exec {}: cannot send a frame: {}", r->req.exec_id(), e.what());
    }
  };
  {
    v1::ExecFrame f;
    f.set_started(true);
    emit(f);
  }
  // An interactive terminal (connect) may run for hours: no cap unless the request asks for one.
  const uint64_t cap = r->req.max_output_bytes() ? std::min(r->req.max_output_bytes(), o_.max_output_bytes)
                       : r->req.tty()          ? UINT64_MAX
                                               : o_.max_output_bytes;
  uint64_t sent = 0;
  bool truncated = false, timed_out = false, killed = false;
  std::string pending = r->req.stdin();  // stdin not yet written
  bool stdin_closing = !r->req.stdin_open();
  uint64_t next_in = 0;
  std::optional<Clock::time_point> deadline;
  if (r->req.timeout_ms()) deadline = started + std::chrono::milliseconds(r->req.timeout_ms());
  std::optional<Clock::time_point> exited_at;
  std::string error;
  auto kill_group = [&](int sig) {
    try {
      send_control(join_fields({"kill", std::to_string(r->id), std::to_string(sig)}));
    } catch (const std::exception& e) {
      spdlog::warn("exec {}: cannot signal: {}", r->req.exec_id(), e.what());
    }
  };
  const bool tty = static_cast<bool>(r->master);
  int in_fd = tty ? r->master.get() : r->in_w.get();
  int out_fd = tty ? r->master.get() : r->out_r.get();
  int err_fd = tty ? -1 : r->err_r.get();
  std::vector<char> buf(kChunk);

  for (;;) {
    // Input and state changes from the other threads.
    std::deque<v1::ExecInput> inputs;
    std::optional<int> code;
    {
      std::lock_guard lock(r->mu);
      inputs.swap(r->inputs);
      code = r->exit_code;
      if (!r->error.empty()) error = r->error;
    }
    for (auto& in : inputs) {
      if (in.seq() != next_in++) {
        if (error.empty()) error = "stdin was lost on the way (input " + std::to_string(next_in - 1) + " missing); the command was killed";
        if (!killed) kill_group(SIGKILL), killed = true;
        continue;
      }
      switch (in.kind_case()) {
        case v1::ExecInput::kData:
          if (!stdin_closing && pending.size() + in.data().size() <= kMaxStdin) pending += in.data();
          break;
        case v1::ExecInput::kCloseStdin:
          stdin_closing = true;
          break;
        case v1::ExecInput::kResize:
          if (tty) set_size(r->master.get(), in.resize().rows(), in.resize().cols());
          break;
        case v1::ExecInput::kSignal:
          if (in.signal() > 0 && in.signal() < 65) kill_group(in.signal());
          break;
        default:
          break;
      }
    }
    // stdin of a pipe ends with EOF; a terminal's stays (its master is the output too).
    if (!tty && stdin_closing && pending.empty() && r->in_w) r->in_w.reset(), in_fd = -1;
    if (code && !exited_at) exited_at = Clock::now();

    auto now = Clock::now();
    if (deadline && now >= *deadline && !code && !timed_out) {
      timed_out = true;
      kill_group(SIGKILL);
      killed = true;
    }
    bool outputs_open = out_fd >= 0 || err_fd >= 0;
    if (code && (!outputs_open || now - *exited_at >= o_.drain_after_exit)) break;

    pollfd fds[4] = {{r->wake_r.get(), POLLIN, 0}, {out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}, {-1, POLLOUT, 0}};
    if (!pending.empty() && in_fd >= 0) {
      if (tty) fds[1].events |= POLLOUT;
      else fds[3].fd = in_fd;
    }
    int wait_ms = -1;
    auto until = [&](Clock::time_point t) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count() + 1;
      wait_ms = wait_ms < 0 ? static_cast<int>(std::max<int64_t>(ms, 0)) : std::min(wait_ms, static_cast<int>(std::max<int64_t>(ms, 0)));
    };
    if (deadline && !timed_out) until(*deadline);
    if (exited_at) until(*exited_at + o_.drain_after_exit);
    if (::poll(fds, 4, wait_ms) < 0 && errno != EINTR) {
      error = errno_text("poll", errno);
      break;
    }
    if (fds[0].revents & POLLIN) {
      char drain[64];
      while (::read(r->wake_r.get(), drain, sizeof drain) > 0) {
      }
    }
    // stdin
    bool can_write = tty ? (fds[1].revents & POLLOUT) : (fds[3].revents & (POLLOUT | POLLERR | POLLHUP));
    if (can_write && !pending.empty()) {
      ssize_t n = ::write(in_fd, pending.data(), pending.size());
      if (n > 0) pending.erase(0, static_cast<size_t>(n));
      else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        pending.clear();  // the command closed its stdin: what it did not read is dropped
        if (!tty) r->in_w.reset(), in_fd = -1, stdin_closing = true;
      }
    }
    // output
    for (int i : {1, 2}) {
      int& fd = i == 1 ? out_fd : err_fd;
      if (fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) {  // EOF; EIO on a terminal's master once every slave is closed
        fd = -1;
        if (tty) in_fd = -1;
        continue;
      }
      uint64_t room = sent < cap ? cap - sent : 0;
      size_t take = static_cast<size_t>(std::min<uint64_t>(room, static_cast<uint64_t>(n)));
      if (take < static_cast<size_t>(n)) truncated = true;
      if (take == 0) continue;  // keep reading so the command never blocks on a full pipe
      sent += take;
      v1::ExecFrame f;
      f.mutable_output()->set_stream(i);
      f.mutable_output()->set_data(buf.data(), take);
      emit(f);
    }
  }
  int code = 137;
  {
    std::lock_guard lock(r->mu);
    if (r->exit_code) code = *r->exit_code;
    if (!r->error.empty() && error.empty()) error = r->error;
  }
  v1::ExecFrame f;
  auto* end = f.mutable_end();
  end->set_exit_code(code);
  end->set_timed_out(timed_out);
  end->set_truncated(truncated);
  end->set_duration_ms(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()));
  end->set_error(error);
  emit(f);
  r->in_w.reset();
  r->out_r.reset();
  r->err_r.reset();
  r->master.reset();
  r->finished = true;
}

void ExecServer::serve(Bus& bus) {
  const std::string prefix = "bulwark.exec." + o_.sandbox_id + ".";
  sub_ = bus.subscribe(subjects::exec_all(o_.sandbox_id), [this, &bus, prefix](Msg& m) {
    std::string rest(m.subject().substr(prefix.size()));
    size_t dot = rest.find('.');
    if (dot != std::string::npos) {
      if (rest.substr(dot) != ".in") return;
      v1::ExecInput in;
      if (!in.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) return;
      input(rest.substr(0, dot), in);
      return;
    }
    if (!m.reply()) return;  // nobody to answer
    std::string reply = m.reply();
    v1::ExecRequest req;
    auto sink = [&bus, reply](const v1::ExecFrame& f) { bus.publish(reply, f); };
    if (!req.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) {
      v1::ExecFrame f;
      f.mutable_end()->set_exit_code(126);
      f.mutable_end()->set_error("not a valid bulwark.v1.ExecRequest");
      sink(f);
      return;
    }
    req.set_exec_id(rest);  // the subject's, whatever the body says
    spdlog::info("exec {}: {} (tty {})", rest, req.command().empty() ? std::string("(none)") : req.command(0), req.tty());
    start(req, sink);
  });
  bus.flush();
}

}  // namespace bulwark::supervisor
