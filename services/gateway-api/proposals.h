#pragma once
// The approval flow (docs/policy.md "Pending proposals"): each denial that a new network policy
// entry would have allowed becomes a proposed rule for the sandbox's policy. Identical proposals
// are one row whose hit count grows; an operator approves one (the gateway then applies it as a
// normal, versioned and acknowledged policy update) or rejects it. Rows live in the gateway's
// SQLite file (table policy_proposals), beside the Store's tables, through a connection of their
// own.
#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bulwark/v1/policy.pb.h"
#include "bulwark/v1/sandbox.pb.h"
#include "services/gateway-api/sqlite_stmt.h"

namespace bulwark::gateway {

struct Proposal {
  int64_t proposal_id = 0;
  std::string sandbox_id;
  std::string status = "pending";  // pending | approved | rejected
  // The minimal entry that would have allowed the denial.
  std::string network_policy;  // the network_policies key it would be added under
  std::string host;
  uint32_t port = 0;
  // No protocol or access: the entry allows the connection at L4 (a blind tunnel), which
  // carries TLS, plain HTTP and protocol: tcp alike; an operator narrows it by editing the policy.
  std::string binary;
  int64_t hits = 0;
  int64_t first_seen_ms = 0, last_seen_ms = 0;
  std::string last_reason;          // the last denial's reason
  uint64_t denied_by_version = 0;   // the policy version of the last denial
  uint64_t approved_version = 0;    // the version the approval stored
};

// The proposal a denial carries, or nullopt when no new entry can fix it: only proxy denials by
// the default deny (no endpoint matched) of an identified binary to a host and port qualify; an
// audit event, a binary that changed, a blocked address or an L7 refusal by an existing entry
// do not. Pure.
std::optional<Proposal> propose(const v1::Denial& d);
// "allow_<host>_<port>" with everything but [a-z0-9] as '_'. Pure.
std::string proposal_key(const std::string& host, uint32_t port);
// The endpoint as a flow mapping, e.g. "{ host: api.example.com, port: 443 }". Pure.
std::string proposal_endpoint_yaml(const Proposal& p);
// The policy update that applies it: add_endpoint (creating the entry) with its binary. Pure.
v1::PolicyUpdateRequest approval_request(const Proposal& p, uint32_t wait_ms, const std::string& reason);
// The REST shape (docs/openapi.yaml Proposal). Pure.
nlohmann::json to_json(const Proposal& p);

class Proposals {
 public:
  explicit Proposals(const std::string& db_path);  // creates the table; throws Error with the path
  ~Proposals();
  Proposals(const Proposals&) = delete;
  Proposals& operator=(const Proposals&) = delete;

  // Records the denial's proposal, if it carries one: a new pending row, or one more hit on the
  // identical one (same sandbox, host, port and binary). An approved proposal denied again by a
  // newer policy version (the entry was removed since) is pending again. Returns the row.
  std::optional<Proposal> on_denial(const std::string& sandbox_id, const v1::Denial& d, int64_t now_ms);
  // The sandbox's proposals in the given status ("" = all), oldest first.
  std::vector<Proposal> list(const std::string& sandbox_id, const std::string& status = "pending");
  // Error(kNotFound, field proposal_id) when the sandbox has no such proposal.
  Proposal get(const std::string& sandbox_id, int64_t proposal_id);
  // pending -> approved: `apply` stores the rule (the policy update; returns the version it
  // stored) and only then is the row marked, so a failed update leaves it pending. One approval
  // at a time: a proposal is applied once. Error(kFailedPrecondition, field status) when it is
  // not pending.
  Proposal approve(const std::string& sandbox_id, int64_t proposal_id,
                   const std::function<uint64_t(const Proposal&)>& apply);
  Proposal reject(const std::string& sandbox_id, int64_t proposal_id);
  // The sandbox is gone: its proposals go too.
  void drop_sandbox(const std::string& sandbox_id);

 private:
  // Its errors name the table: "sqlite (policy_proposals): ...".
  struct Stmt : SqliteStmt {
    Stmt(sqlite3* db, const std::string& sql) : SqliteStmt(db, sql, "policy_proposals") {}
  };
  Proposal decide(const std::string& sandbox_id, int64_t proposal_id, bool approve, uint64_t version);
  Proposal pending_one(const std::string& sandbox_id, int64_t proposal_id);
  sqlite3* db_ = nullptr;
  std::mutex mu_;        // the connection
  std::mutex decide_mu_;  // approvals and rejections, one at a time
};

}  // namespace bulwark::gateway
