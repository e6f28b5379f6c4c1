#include "services/gateway-api/audit_log.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

namespace bulwark::gateway {

namespace {
google::protobuf::Timestamp from_millis(int64_t ms) {
  google::protobuf::Timestamp t;
  t.set_seconds(ms / 1000);
  t.set_nanos(static_cast<int32_t>((ms % 1000) * 1'000'000));
  return t;
}
}  // namespace

std::string audit_json(const AuditRow& r) {
  nlohmann::ordered_json j = {{"seq", r.seq},           {"at_ms", r.at_ms},       {"token_id", r.token_id},
                      {"token_name", r.token_name}, {"scope", r.scope},       {"method", r.method},
                      {"path", r.path},         {"sandbox_id", r.sandbox_id}, {"status", r.status},
                      {"result", r.result},     {"remote_addr", r.remote_addr}, {"request_id", r.request_id}};
  // Paths and names come from clients: dump() escapes them, so one call is always one line.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

v1::AuditEntry audit_entry(const AuditRow& r) {
  v1::AuditEntry e;
  e.set_seq(static_cast<uint64_t>(r.seq));
  *e.mutable_at() = from_millis(r.at_ms);
  e.set_token_id(r.token_id);
  e.set_token_name(r.token_name);
  e.set_scope(r.scope);
  e.set_method(r.method);
  e.set_path(r.path);
  e.set_sandbox_id(r.sandbox_id);
  e.set_status(r.status);
  e.set_result(r.result);
  e.set_remote_addr(r.remote_addr);
  e.set_request_id(r.request_id);
  return e;
}

void AuditLog::record(AuditRow r) {
  try {
    r.seq = store_.append_audit(r);
  } catch (const std::exception& e) {
    spdlog::error("cannot store the audit row of {} {} (it is logged below): {}", r.method, r.path, e.what());
  }
  spdlog::info("audit {}", audit_json(r));
}

v1::ListAuditReply AuditLog::list(int64_t since, size_t limit) {
  v1::ListAuditReply reply;
  for (const auto& r : store_.list_audit(since, limit)) *reply.add_entries() = audit_entry(r);
  return reply;
}

}  // namespace bulwark::gateway
