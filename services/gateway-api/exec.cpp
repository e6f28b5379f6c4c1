#include "services/gateway-api/exec.h"

#include <nats/nats.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <mutex>

#include "services/gateway-api/sandboxes.h"
#include "shared/error.h"
#include "shared/subjects.h"
#include "shared/util.h"

namespace bulwark::gateway {

namespace {
using json = nlohmann::json;
constexpr size_t kStdinChunk = 256 * 1024;  // per NATS message, well under max_payload
// The supervisor enforces the timeout; past it by this much, the gateway stops waiting.
constexpr auto kAnswerMargin = std::chrono::seconds(20);

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

v1::ExecRequest parse_exec_body(const std::string& body) {
  json j;
  try {
    j = json::parse(body.empty() ? "{}" : body);
  } catch (const json::exception& e) {
    throw Error(Code::kInvalidArgument, std::string("the body is not JSON: ") + e.what());
  }
  if (!j.is_object()) throw Error(Code::kInvalidArgument, "the body must be a JSON object");
  v1::ExecRequest r;
  bool has_command = false;
  for (auto& [k, v] : j.items()) {
    if (k == "command") {
      if (!v.is_array()) throw Error(Code::kInvalidArgument, "command: must be an array of strings", "command");
      for (auto& a : v) {
        if (!a.is_string()) throw Error(Code::kInvalidArgument, "command: must be an array of strings", "command");
        r.add_command(a.get<std::string>());
      }
      has_command = true;
    } else if (k == "env") {
      if (!v.is_object()) throw Error(Code::kInvalidArgument, "env: must be an object of strings", "env");
      for (auto& [name, val] : v.items()) {
        if (!val.is_string()) throw Error(Code::kInvalidArgument, "env." + name + ": must be a string", "env");
        if (name.empty() || name.find('=') != std::string::npos || name.find('\0') != std::string::npos)
          throw Error(Code::kInvalidArgument, "env: bad variable name '" + name + "'", "env");
        (*r.mutable_env())[name] = val.get<std::string>();
      }
    } else if (k == "workdir") {
      if (!v.is_string()) throw Error(Code::kInvalidArgument, "workdir: must be a string", "workdir");
      r.set_workdir(v.get<std::string>());
      if (!r.workdir().empty() && r.workdir()[0] != '/')
        throw Error(Code::kInvalidArgument, "workdir: must be an absolute path", "workdir");
    } else if (k == "stdin") {
      if (!v.is_string()) throw Error(Code::kInvalidArgument, "stdin: must be a string", "stdin");
      r.set_stdin(v.get<std::string>());
    } else if (k == "timeout_s") {
      if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > kMaxExecTimeoutS)
        throw Error(Code::kInvalidArgument, "timeout_s: must be a whole number of seconds from 1 to " + std::to_string(kMaxExecTimeoutS),
                    "timeout_s");
      r.set_timeout_ms(static_cast<uint32_t>(v.get<int64_t>() * 1000));
    } else {
      throw Error(Code::kInvalidArgument, k + ": unknown field (known: command, env, workdir, stdin, timeout_s)", k);
    }
  }
  if (!has_command || r.command().empty() || r.command(0).empty())
    throw Error(Code::kInvalidArgument, "command: required, a non-empty array (argv)", "command");
  if (!r.timeout_ms()) r.set_timeout_ms(kDefaultExecTimeoutS * 1000);
  return r;
}

void check_exec_allowed(const v1::Sandbox& s) {
  if (s.phase() == v1::READY) return;
  if (s.phase() == v1::EXITED && s.spec().keep_after_exit()) return;
  std::string why = s.phase() == v1::EXITED ? " (its agent ended and it was not created with keep_after_exit)" : "";
  throw Error(Code::kFailedPrecondition,
              "sandbox " + s.sandbox_id() + " is " + v1::SandboxPhase_Name(s.phase()) + why +
                  ": exec needs a READY sandbox, or an EXITED one created with keep_after_exit");
}

void ExecCollector::add(const v1::ExecFrame& f) {
  if (f.has_started()) started_ = true;
  if (f.has_output()) (f.output().stream() == 2 ? err_ : out_) += f.output().data();
  if (f.has_end()) end_ = f.end();
}

std::string ExecCollector::json() const {
  nlohmann::json j = {{"exit_code", end_->exit_code()}, {"stdout", out_},           {"stderr", err_},
                      {"timed_out", end_->timed_out()}, {"truncated", end_->truncated()}, {"duration_ms", end_->duration_ms()}};
  if (!end_->error().empty()) j["error"] = end_->error();
  return dump(j);
}

std::string ndjson_line(const v1::ExecFrame& f) {
  json j;
  if (f.has_output()) {
    j = {{"stream", f.output().stream() == 2 ? "stderr" : "stdout"}, {"data", f.output().data()}};
  } else if (f.has_end()) {
    const auto& e = f.end();
    j = {{"exit_code", e.exit_code()}, {"timed_out", e.timed_out()}, {"truncated", e.truncated()}, {"duration_ms", e.duration_ms()}};
    if (!e.error().empty()) j["error"] = e.error();
  } else {
    return "";
  }
  return dump(j) + "\n";
}

std::string ndjson_error(const Error& e) {
  json j = {{"error", {{"code", code_name(e.code())}, {"message", e.what()}}}};
  return dump(j) + "\n";
}

namespace {
void check_path(const std::string& path) {
  if (path.empty()) throw Error(Code::kInvalidArgument, "path: required (?path=/absolute/path inside the sandbox)", "path");
  if (path[0] != '/') throw Error(Code::kInvalidArgument, "path: must be absolute, got '" + path + "'", "path");
  if (path.find('\0') != std::string::npos) throw Error(Code::kInvalidArgument, "path: must not contain NUL", "path");
}
}  // namespace

std::vector<std::string> untar_command(const std::string& dir) {
  check_path(dir);
  // No owners or modes from the archive beyond what the sandbox's uid may set anyway.
  return {"tar", "-x", "-o", "-f", "-", "-C", dir};
}

std::vector<std::string> tar_command(const std::string& path) {
  check_path(path);
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  if (p == "/") return {"tar", "-c", "-f", "-", "-C", "/", "."};
  size_t slash = p.rfind('/');
  std::string parent = slash == 0 ? "/" : p.substr(0, slash);
  return {"tar", "-c", "-f", "-", "-C", parent, p.substr(slash + 1)};
}

Error tar_error(const std::string& what, const std::string& path, int exit_code, const std::string& stderr_text) {
  std::string detail = stderr_text;
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == '\r')) detail.pop_back();
  if (detail.size() > 2000) detail = detail.substr(0, 2000) + "...";
  std::string msg = what + " " + path + " failed (tar exit code " + std::to_string(exit_code) + "): " + detail;
  if (detail.find("ermission denied") != std::string::npos || detail.find("ead-only file system") != std::string::npos ||
      detail.find("Operation not permitted") != std::string::npos)
    return Error(Code::kPermissionDenied, msg + " (the sandbox's filesystem policy does not allow it)", "path");
  if (detail.find("No such file or directory") != std::string::npos) return Error(Code::kNotFound, msg, "path");
  if (exit_code == 127) return Error(Code::kFailedPrecondition, msg + " (the sandbox's image has no tar)", "path");
  return Error(Code::kInvalidArgument, msg, "path");
}

struct ExecSession::State {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<v1::ExecFrame> frames;
  bool no_responders = false;
  bool bad = false;
};

ExecSession::ExecSession(Bus& bus, const std::string& sandbox_id, v1::ExecRequest req)
    : bus_(bus), sandbox_id_(sandbox_id), exec_id_(random_hex(8)), st_(std::make_shared<State>()) {
  req.set_sandbox_id(sandbox_id);
  req.set_exec_id(exec_id_);
  // Stdin past the first message follows as ExecInput.
  std::string rest;
  if (req.stdin().size() > kStdinChunk) {
    rest = req.stdin().substr(kStdinChunk);
    req.mutable_stdin()->resize(kStdinChunk);
    req.set_stdin_open(true);
  }
  bool more = req.stdin_open() && !rest.empty();
  natsInbox* ib = nullptr;
  check_nats(natsInbox_Create(&ib), "make an inbox");
  std::string inbox = ib;
  natsInbox_Destroy(ib);
  sub_ = bus_.subscribe(inbox, [st = st_](Msg& m) {
    std::lock_guard lock(st->mu);
    if (natsMsg_IsNoResponders(m.raw())) {
      st->no_responders = true;
    } else {
      v1::ExecFrame f;
      if (f.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) st->frames.push_back(std::move(f));
      else st->bad = true;
    }
    st->cv.notify_all();
  });
  bus_.publish(subjects::exec_start(sandbox_id, exec_id_), inbox, req.SerializeAsString());
  if (more) {
    for (size_t at = 0; at < rest.size(); at += kStdinChunk) send_data(rest.substr(at, kStdinChunk));
    close_stdin();
  }
}

ExecSession::~ExecSession() = default;

void ExecSession::send(v1::ExecInput in) {
  std::lock_guard lock(in_mu_);
  in.set_seq(in_seq_++);
  bus_.publish(subjects::exec_input(sandbox_id_, exec_id_), in);
}
void ExecSession::send_data(const std::string& data) {
  v1::ExecInput in;
  in.set_data(data);
  send(std::move(in));
}
void ExecSession::close_stdin() {
  v1::ExecInput in;
  in.set_close_stdin(true);
  send(std::move(in));
}
void ExecSession::resize(uint32_t rows, uint32_t cols) {
  v1::ExecInput in;
  in.mutable_resize()->set_rows(rows);
  in.mutable_resize()->set_cols(cols);
  send(std::move(in));
}
void ExecSession::kill() {
  v1::ExecInput in;
  in.set_signal(SIGKILL);
  send(std::move(in));
}

std::optional<v1::ExecFrame> ExecSession::next(std::chrono::milliseconds wait) {
  std::unique_lock lock(st_->mu);
  if (!st_->cv.wait_for(lock, wait, [&] { return !st_->frames.empty() || st_->no_responders || st_->bad; })) return std::nullopt;
  if (st_->no_responders)
    throw Error(Code::kUnavailable, "sandbox " + sandbox_id_ + ": its supervisor is not listening for exec (is the sandbox running?)");
  if (st_->bad) throw Error(Code::kInternal, "sandbox " + sandbox_id_ + ": a malformed exec frame arrived");
  v1::ExecFrame f = std::move(st_->frames.front());
  st_->frames.pop_front();
  lock.unlock();
  if (f.seq() != want_++) {
    kill();
    throw Error(Code::kInternal, "sandbox " + sandbox_id_ + ": exec output frames were lost on the way (frame " +
                                     std::to_string(want_ - 1) + " missing); the command was killed");
  }
  return f;
}

std::unique_ptr<ExecSession> ExecService::open(const std::string& sandbox_id, v1::ExecRequest req) {
  return std::make_unique<ExecSession>(bus_, sandbox_id, std::move(req));
}

v1::ExecEnd ExecService::run(const std::string& sandbox_id, v1::ExecRequest req, const OnFrame& on_frame) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(req.timeout_ms()) + kAnswerMargin;
  auto session = open(sandbox_id, std::move(req));
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto f = session->next(std::max(left, std::chrono::milliseconds(0)));
    if (!f)
      throw Error(Code::kTimeout, "sandbox " + sandbox_id + ": its supervisor stopped answering the exec (the sandbox may have ended)");
    if (!on_frame(*f)) {
      session->kill();
      return v1::ExecEnd();
    }
    if (f->has_end()) return f->end();
  }
}

namespace {
v1::Sandbox exec_target(Sandboxes& sandboxes, const std::string& ref) {
  auto s = sandboxes.get(ref);
  check_exec_allowed(s);
  return s;
}

// Runs a command to its end, collecting everything (non-streaming answers).
ExecCollector run_collect(ExecService& exec, const std::string& sandbox_id, v1::ExecRequest req) {
  ExecCollector c;
  exec.run(sandbox_id, std::move(req), [&](const v1::ExecFrame& f) {
    c.add(f);
    return true;
  });
  if (!c.started() && !c.end().error().empty())
    throw Error(Code::kFailedPrecondition, "sandbox " + sandbox_id + ": the exec was refused: " + c.end().error());
  return c;
}
}  // namespace

void serve_exec(ExecService& exec, Sandboxes& sandboxes, const std::string& ref, const std::string& body, bool stream,
                httplib::Response& res) {
  auto req = parse_exec_body(body);
  auto s = exec_target(sandboxes, ref);
  if (!stream) {
    req.set_max_output_bytes(kMaxExecOutput);
    auto c = run_collect(exec, s.sandbox_id(), std::move(req));
    res.status = 200;
    res.set_content(c.json(), "application/json");
    return;
  }
  // Streaming: the status is sent before the command runs; failures after it are an error line.
  res.status = 200;
  std::string id = s.sandbox_id();
  res.set_chunked_content_provider("application/x-ndjson", [&exec, id, req](size_t, httplib::DataSink& sink) {
    try {
      exec.run(id, req, [&](const v1::ExecFrame& f) {
        std::string line = ndjson_line(f);
        return line.empty() || sink.write(line.data(), line.size());
      });
    } catch (const Error& e) {
      std::string line = ndjson_error(e);
      sink.write(line.data(), line.size());
    } catch (const std::exception& e) {
      std::string line = ndjson_error(Error(Code::kInternal, e.what()));
      sink.write(line.data(), line.size());
    }
    sink.done();
    return true;
  });
}

void serve_upload(ExecService& exec, Sandboxes& sandboxes, const std::string& ref, const std::string& path,
                  const std::string& body, httplib::Response& res) {
  v1::ExecRequest req;
  for (auto& a : untar_command(path)) req.add_command(a);
  if (body.empty()) throw Error(Code::kInvalidArgument, "the body must be a tar archive (it is empty)");
  auto s = exec_target(sandboxes, ref);
  req.set_stdin(body);
  req.set_timeout_ms(kDefaultExecTimeoutS * 1000);
  req.set_max_output_bytes(64 * 1024);
  auto c = run_collect(exec, s.sandbox_id(), std::move(req));
  if (c.end().exit_code() != 0 || c.end().timed_out()) {
    if (c.end().timed_out()) throw Error(Code::kTimeout, "upload to " + path + ": tar did not finish in time");
    throw tar_error("upload to", path, c.end().exit_code(), c.err());
  }
  res.status = 200;
  res.set_content(dump(json{{"path", path}, {"bytes", body.size()}}), "application/json");
}

void serve_download(ExecService& exec, Sandboxes& sandboxes, const std::string& ref, const std::string& path,
                    httplib::Response& res) {
  v1::ExecRequest req;
  for (auto& a : tar_command(path)) req.add_command(a);
  auto s = exec_target(sandboxes, ref);
  req.set_timeout_ms(kDefaultExecTimeoutS * 1000);
  req.set_max_output_bytes(kMaxDownload);
  auto c = run_collect(exec, s.sandbox_id(), std::move(req));
  if (c.end().timed_out()) throw Error(Code::kTimeout, "download of " + path + ": tar did not finish in time");
  if (c.end().exit_code() != 0) throw tar_error("download of", path, c.end().exit_code(), c.err());
  if (c.end().truncated())
    throw Error(Code::kPayloadTooLarge, "download of " + path + ": the archive is over " + std::to_string(kMaxDownload) + " bytes", "path");
  res.status = 200;
  res.set_content(c.out(), "application/x-tar");
}

}  // namespace bulwark::gateway
