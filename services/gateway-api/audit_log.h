#pragma once
// The audit log of the REST API: every mutating call (POST, PUT, PATCH, DELETE), allowed or not,
// as one row of the SQLite table `audit` (GET /v1/audit, admin only) and one JSON line on the
// gateway's log ("audit {...}"). Who (token_id, name, scope), what (method, path, sandbox_id),
// when, the result (HTTP status and error code), from where (remote address), and the request id.
// Never bodies: they may carry credentials.
#include <cstdint>
#include <string>

#include "bulwark/v1/auth.pb.h"
#include "services/gateway-api/store.h"

namespace bulwark::gateway {

// The log line's JSON object. Pure.
std::string audit_json(const AuditRow& r);
v1::AuditEntry audit_entry(const AuditRow& r);

class AuditLog {
 public:
  explicit AuditLog(Store& store) : store_(store) {}
  // Stores the row and logs it. A store failure is logged (the line still goes out), not thrown:
  // the call it records has already happened.
  void record(AuditRow r);
  // Rows with seq > since, oldest first, at most limit.
  v1::ListAuditReply list(int64_t since, size_t limit);

 private:
  Store& store_;
};

}  // namespace bulwark::gateway
