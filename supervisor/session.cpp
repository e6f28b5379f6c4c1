#include "supervisor/session.h"

#include <spdlog/spdlog.h>

#include "bulwark/v1/sandbox.pb.h"
#include "shared/nats_auth.h"
#include "shared/subjects.h"
#include "shared/util.h"

namespace bulwark::supervisor {

Session::Session(const CommonOptions& common, std::string sandbox_id)
    : sandbox_id_(std::move(sandbox_id)),
      bus_(Bus::connect({common.nats_url, "bulwark-supervisor-" + sandbox_id_,
                         std::chrono::milliseconds(static_cast<int64_t>(common.nats_connect_timeout_s * 1000)),
                         common.nats_creds, common.nats_ca, nats_auth::sandbox_inbox_prefix(sandbox_id_)})),
      publisher_([this] { publisher(); }) {}

Session::~Session() { stop_publisher(); }

void Session::stop_publisher() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (publisher_.joinable()) publisher_.join();
}

void Session::report(int kind, int exit_code, const std::string& reason, const v1::Confinement* c) {
  flush_lines(std::chrono::seconds(10));  // the lines the agent wrote before the report, first
  v1::StateReport r;
  r.set_sandbox_id(sandbox_id_);
  r.set_source(v1::SOURCE_SUPERVISOR);
  r.set_kind(static_cast<v1::ReportKind>(kind));
  r.set_exit_code(exit_code);
  r.set_reason(reason);
  *r.mutable_at() = now_timestamp();
  if (c) *r.mutable_confinement() = *c;
  bus_->js_publish(subjects::sandbox_state(sandbox_id_), r, std::chrono::seconds(30));
}

void Session::check_in(const ContainReport& cr) {
  v1::Confinement c;
  c.set_landlock_abi(cr.landlock_abi);
  for (const auto& n : cr.notes) c.add_notes(n);
  c.set_setup_ms(cr.setup_ms);
  report(v1::REPORT_SUPERVISOR_CHECKED_IN, 0, "", &c);
}
void Session::agent_exited(int exit_code) { report(v1::REPORT_AGENT_EXITED, exit_code, ""); }
void Session::failed(const std::string& reason) { report(v1::REPORT_FAILED, 0, reason); }

void Session::log_line(const std::string& stream, const std::string& line) {
  v1::LogLine l;
  l.set_stream(stream);
  l.set_line(line);
  publish_log(l, true);
}

void Session::denial(const v1::Denial& d, const std::string& line) {
  v1::LogLine l;
  l.set_stream("denial");
  l.set_line(line);
  *l.mutable_denial() = d;
  publish_log(l, false);
}

void Session::publish_log(v1::LogLine& l, bool may_wait) {
  l.set_sandbox_id(sandbox_id_);
  *l.mutable_at() = now_timestamp();
  std::unique_lock lock(mu_);
  if (may_wait) changed_.wait(lock, [&] { return queue_.size() < kMaxQueuedLines || stopping_; });
  if (stopping_) return;  // closed: nothing is published any more
  if (queue_.size() >= kMaxQueuedLines) {
    if (dropped_++ % 1000 == 0)
      spdlog::warn("log line not relayed: {} lines queued for NATS ({} dropped so far)", queue_.size(), dropped_);
    return;
  }
  queue_.push_back(std::move(l));
  changed_.notify_all();
}

void Session::publisher() {
  std::unique_lock lock(mu_);
  for (;;) {
    changed_.wait(lock, [&] { return !queue_.empty() || stopping_; });
    if (stopping_) {  // close() gave the queue its time already; the destructor does not wait
      if (!queue_.empty()) spdlog::warn("{} log lines not relayed: the session is closing", queue_.size());
      return;
    }
    v1::LogLine l = std::move(queue_.front());
    queue_.pop_front();
    publishing_ = true;
    changed_.notify_all();  // room for a waiting log_line
    lock.unlock();
    try {
      bus_->js_publish(subjects::sandbox_logs(sandbox_id_), l);
    } catch (const std::exception& e) {
      // Output is also on the workload's own stdout (podman logs); losing the relayed copy must
      // not stop the agent.
      spdlog::warn("log line not relayed: {}", e.what());
    }
    lock.lock();
    publishing_ = false;
    changed_.notify_all();
  }
}

void Session::flush_lines(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  changed_.wait_for(lock, timeout, [&] { return queue_.empty() && !publishing_; });
}

void Session::close() {
  flush_lines(std::chrono::seconds(10));
  stop_publisher();
  bus_->drain();
}

}  // namespace bulwark::supervisor
