#include "services/gateway-api/watch.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "shared/error.h"
#include "shared/proto_json.h"
#include "shared/util.h"

namespace bulwark::gateway {

namespace {
using google::protobuf::util::TimeUtil;

std::string rfc3339(const google::protobuf::Timestamp& t) { return TimeUtil::ToString(t); }
}  // namespace

WatchEvent phase_event(const v1::Sandbox& after, v1::SandboxPhase before) {
  WatchEvent e;
  e.kind = "phase";
  e.sandbox_id = after.sandbox_id();
  e.owner = after.owner();
  e.at_ms = to_millis(after.updated_at());
  e.phase = after.phase();
  nlohmann::json d = {{"sandbox_id", after.sandbox_id()},
                      {"name", after.name()},
                      {"at", rfc3339(after.updated_at())},
                      {"phase", v1::SandboxPhase_Name(after.phase())},
                      {"previous_phase", v1::SandboxPhase_Name(before)}};
  if (!after.reason().empty()) d["reason"] = after.reason();
  if (after.has_exit_code()) d["exit_code"] = after.exit_code();
  e.data = d.dump();
  return e;
}

WatchEvent log_event(const v1::LogLine& line, const std::string& owner) {
  WatchEvent e;
  e.kind = "log";
  e.sandbox_id = line.sandbox_id();
  e.owner = owner;
  e.stream = line.stream();
  e.at_ms = to_millis(line.at());
  e.data = message_to_json(line);
  return e;
}

std::optional<WatchEvent> denial_event(const v1::LogLine& line, const std::string& owner) {
  if (line.stream() != "denial") return std::nullopt;
  WatchEvent e;
  e.kind = "denial";
  e.sandbox_id = line.sandbox_id();
  e.owner = owner;
  e.at_ms = to_millis(line.at());
  nlohmann::json d = {{"sandbox_id", line.sandbox_id()},
                      {"at", rfc3339(line.at())},
                      {"denial", nlohmann::json::parse(message_to_json(line.denial()))},
                      {"line", line.line()}};
  e.data = d.dump();
  return e;
}

std::string sse_frame(const WatchEvent& e) {
  // data is one line of JSON (dump() escapes newlines), so one data: field carries it.
  return "event: " + e.kind + "\ndata: " + e.data + "\n\n";
}

bool has_ended(v1::SandboxPhase p) {
  return p == v1::EXITED || p == v1::STOPPED || p == v1::DELETED || p == v1::FAILED || p == v1::STOPPING;
}

int64_t parse_since(const std::string& text, int64_t now_ms) {
  auto bad = [&]() -> Error {
    return Error(Code::kInvalidArgument,
                 "since: must be an RFC 3339 time (2026-11-30T03:00:00Z) or a duration such as 90s, 5m, 1h30m or 2d, "
                 "got '" + text + "'",
                 "since");
  };
  if (text.empty()) throw bad();
  if (text.find('T') != std::string::npos || text.find('t') != std::string::npos) {
    google::protobuf::Timestamp t;
    std::string upper = text;
    std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
    if (!TimeUtil::FromString(upper, &t)) throw bad();
    return to_millis(t);
  }
  // A duration: one or more <digits><unit>, units ms, s, m, h, d.
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    if (i == start || i - start > 9) throw bad();
    int64_t n = std::stoll(text.substr(start, i - start));
    int64_t unit = 0;
    if (text.compare(i, 2, "ms") == 0) unit = 1, i += 2;
    else if (i < text.size() && text[i] == 's') unit = 1000, ++i;
    else if (i < text.size() && text[i] == 'm') unit = 60'000, ++i;
    else if (i < text.size() && text[i] == 'h') unit = 3'600'000, ++i;
    else if (i < text.size() && text[i] == 'd') unit = 86'400'000, ++i;
    else throw bad();
    total += n * unit;
    if (total > int64_t{3650} * 86'400'000) throw bad();  // ten years back is a typo
  }
  return now_ms - total;
}

std::optional<WatchEvent> Watchers::Subscription::next(std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, wait, [&] { return !queue_.empty(); })) return std::nullopt;
  WatchEvent e = std::move(queue_.front());
  queue_.pop_front();
  return e;
}

uint64_t Watchers::Subscription::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

void Watchers::Subscription::offer(const WatchEvent& e) {
  if (filter_ && !filter_(e)) return;
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= max_queue_) {
      queue_.pop_front();
      ++dropped_;
    }
    queue_.push_back(e);
  }
  cv_.notify_one();
}

std::shared_ptr<Watchers::Subscription> Watchers::subscribe(Filter f, size_t max_queue) {
  std::shared_ptr<Subscription> s(new Subscription(std::move(f), std::max<size_t>(max_queue, 1)));
  std::lock_guard lock(mu_);
  subs_.push_back(s);
  return s;
}

void Watchers::publish(const WatchEvent& e) {
  std::vector<std::shared_ptr<Subscription>> live;
  {
    std::lock_guard lock(mu_);
    std::erase_if(subs_, [](const auto& w) { return w.expired(); });
    for (const auto& w : subs_)
      if (auto s = w.lock()) live.push_back(std::move(s));
  }
  for (const auto& s : live) s->offer(e);
}

size_t Watchers::subscribers() {
  std::lock_guard lock(mu_);
  std::erase_if(subs_, [](const auto& w) { return w.expired(); });
  return subs_.size();
}

}  // namespace bulwark::gateway
