#pragma once
// exec and file transfer into a running sandbox (docs/exec.md). The gateway never dials into a
// sandbox: it publishes an ExecRequest on bulwark.exec.<sandbox_id>.<exec_id> (exec.proto), to
// which the sandbox's supervisor subscribed, and reads the ExecFrames it answers on an inbox.
//
// Pure parts (request bodies, results, NDJSON frames, file-transfer commands and their errors)
// are free functions tested in exec_test.cpp; ExecService is the NATS side; the REST handlers at
// the bottom are what http_api.cpp registers.
#include <httplib.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "bulwark/v1/exec.pb.h"
#include "bulwark/v1/sandbox.pb.h"
#include "shared/bus.h"

namespace bulwark::gateway {

class Sandboxes;

inline constexpr uint32_t kDefaultExecTimeoutS = 300;
inline constexpr uint32_t kMaxExecTimeoutS = 24 * 3600;
inline constexpr uint64_t kMaxExecOutput = 16ull << 20;    // the non-streaming answer holds it all
inline constexpr uint64_t kMaxDownload = 256ull << 20;     // GET files: one tar in memory
inline constexpr size_t kMaxUpload = 256ull << 20;         // PUT files: the request body

// POST /v1/sandboxes/{id}/exec body -> ExecRequest. Unknown fields, wrong types and an empty
// command are refused naming the field. Pure.
v1::ExecRequest parse_exec_body(const std::string& body);
// May `sandbox` run an exec? READY, or EXITED with keep_after_exit; else failed_precondition.
void check_exec_allowed(const v1::Sandbox& sandbox);

// Folds frames into the non-streaming answer. Pure.
class ExecCollector {
 public:
  void add(const v1::ExecFrame& f);
  bool started() const { return started_; }
  bool ended() const { return end_.has_value(); }
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }
  const v1::ExecEnd& end() const { return *end_; }
  // {"exit_code","stdout","stderr","timed_out","truncated","duration_ms"(,"error")}; invalid
  // UTF-8 in the output becomes U+FFFD.
  std::string json() const;

 private:
  bool started_ = false;
  std::string out_, err_;
  std::optional<v1::ExecEnd> end_;
};

// One NDJSON line (with its "\n") for a frame: {"stream":"stdout","data":"..."} or the end
// {"exit_code":0,"timed_out":false,...}; "" for frames that say nothing (started). Pure.
std::string ndjson_line(const v1::ExecFrame& f);
std::string ndjson_error(const Error& e);

// The tar commands run inside the sandbox for file transfer, and what their failures mean.
// path must be absolute (field "path"). Pure.
std::vector<std::string> untar_command(const std::string& dir);
std::vector<std::string> tar_command(const std::string& path);
// A failed tar as an Error: permission_denied (the policy refused), not_found, else invalid_argument.
Error tar_error(const std::string& what, const std::string& path, int exit_code, const std::string& stderr_text);

// One exec in flight, driven frame by frame (connect's interactive terminal; run() below). Input
// methods may be called from any thread. Destroying it unsubscribes (a running command goes on
// until it ends or its timeout: call kill() first to end it).
class ExecSession {
 public:
  ExecSession(Bus& bus, const std::string& sandbox_id, v1::ExecRequest req);
  ~ExecSession();
  ExecSession(const ExecSession&) = delete;
  ExecSession& operator=(const ExecSession&) = delete;
  // The next frame in seq order; nullopt when none came within wait. Throws Error: unavailable
  // when no supervisor listens, internal on a lost frame (the command is killed then).
  std::optional<v1::ExecFrame> next(std::chrono::milliseconds wait);
  void send_data(const std::string& data);
  void close_stdin();
  void resize(uint32_t rows, uint32_t cols);
  void kill();  // SIGKILL to the command's process group
  const std::string& sandbox_id() const { return sandbox_id_; }

 private:
  void send(v1::ExecInput in);
  struct State;
  Bus& bus_;
  std::string sandbox_id_, exec_id_;
  std::shared_ptr<State> st_;
  std::mutex in_mu_;
  uint64_t in_seq_ = 0;
  uint64_t want_ = 0;
  Subscription sub_;
};

class ExecService {
 public:
  explicit ExecService(Bus& bus) : bus_(bus) {}
  // Starts one exec (publishes the request and the stdin past its first 256 KiB).
  std::unique_ptr<ExecSession> open(const std::string& sandbox_id, v1::ExecRequest req);
  using OnFrame = std::function<bool(const v1::ExecFrame&)>;  // false: stop (the client left); the command is killed
  // Runs one exec to its end frame (returned). Frames go to on_frame in seq order. Throws Error:
  // unavailable when no supervisor listens, timeout when it stops answering, internal on lost frames.
  v1::ExecEnd run(const std::string& sandbox_id, v1::ExecRequest req, const OnFrame& on_frame);

 private:
  Bus& bus_;
};

// The REST routes (registered by http_api.cpp). ref: the sandbox's id or name from the path.
void serve_exec(ExecService& exec, Sandboxes& sandboxes, const std::string& ref, const std::string& body, bool stream,
                httplib::Response& res);
void serve_upload(ExecService& exec, Sandboxes& sandboxes, const std::string& ref, const std::string& path,
                  const std::string& body, httplib::Response& res);
void serve_download(ExecService& exec, Sandboxes& sandboxes, const std::string& ref, const std::string& path,
                    httplib::Response& res);

}  // namespace bulwark::gateway
