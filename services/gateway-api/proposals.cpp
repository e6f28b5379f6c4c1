#include "services/gateway-api/proposals.h"

#include <algorithm>

#include "shared/error.h"

namespace bulwark::gateway {

std::optional<Proposal> propose(const v1::Denial& d) {
  // Only "nothing matched": any other proxy rule is a check a new entry would not (or must not)
  // get past, and other layers (landlock, seccomp) are not network policy.
  if (d.layer() != "proxy" || d.audit() || d.rule() != "bulwark:default-deny") return std::nullopt;
  // A new entry needs a binary (policy-service requires one), a host and a port.
  if (d.binary().empty() || d.host().empty() || d.port() == 0 || d.port() > 65535) return std::nullopt;
  // The host goes into YAML as a plain scalar: only what a host name or address may hold.
  if (!std::all_of(d.host().begin(), d.host().end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
               c == '_' || c == ':';
      }))
    return std::nullopt;
  Proposal p;
  p.host = d.host();
  std::transform(p.host.begin(), p.host.end(), p.host.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  p.port = d.port();
  p.binary = d.binary();
  p.network_policy = proposal_key(p.host, p.port);
  p.last_reason = d.reason();
  p.denied_by_version = d.policy_version();
  return p;
}

std::string proposal_key(const std::string& host, uint32_t port) {
  std::string k = "allow_";
  for (char c : host) k += (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? c : '_';
  return k + "_" + std::to_string(port);
}

std::string proposal_endpoint_yaml(const Proposal& p) {
  // An IPv6 literal needs quotes (it holds ':'); names and IPv4 do not.
  std::string host = p.host.find(':') != std::string::npos ? "\"" + p.host + "\"" : p.host;
  return "{ host: " + host + ", port: " + std::to_string(p.port) + " }";
}

v1::PolicyUpdateRequest approval_request(const Proposal& p, uint32_t wait_ms, const std::string& reason) {
  v1::PolicyUpdateRequest req;
  req.set_sandbox_id(p.sandbox_id);
  auto* a = req.add_operations()->mutable_add_endpoint();
  a->set_network_policy(p.network_policy);
  a->set_endpoint_yaml(proposal_endpoint_yaml(p));
  a->add_binaries(p.binary);
  req.set_wait_ms(wait_ms);
  req.set_reason(reason.empty() ? "approved proposal " + std::to_string(p.proposal_id) : reason);
  return req;
}

nlohmann::json to_json(const Proposal& p) {
  nlohmann::json j = {{"proposal_id", p.proposal_id},
                      {"sandbox_id", p.sandbox_id},
                      {"status", p.status},
                      {"network_policy", p.network_policy},
                      {"host", p.host},
                      {"port", p.port},
                      {"binary", p.binary},
                      {"endpoint_yaml", proposal_endpoint_yaml(p)},
                      {"hits", p.hits},
                      {"first_seen_ms", p.first_seen_ms},
                      {"last_seen_ms", p.last_seen_ms},
                      {"last_reason", p.last_reason},
                      {"denied_by_version", p.denied_by_version}};
  if (p.approved_version) j["approved_version"] = p.approved_version;
  return j;
}

namespace {
constexpr const char* kColumns =
    "proposal_id, sandbox_id, status, network_policy, host, port, binary, hits, first_seen_ms, last_seen_ms, "
    "last_reason, denied_by_version, approved_version";
}  // namespace

Proposals::Proposals(const std::string& db_path) {
  if (sqlite3_open_v2(db_path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr) !=
      SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(Code::kUnavailable, "cannot open the gateway database " + db_path + " for policy proposals: " + msg);
  }
  // The Store writes the same file through its own connection: wait for each other's locks.
  sqlite3_busy_timeout(db_, 5000);
  char* err = nullptr;
  // Dedup key: sandbox, host, port, binary. A sandbox's rows are bounded by what it was denied.
  if (sqlite3_exec(db_, R"(CREATE TABLE IF NOT EXISTS policy_proposals (
           proposal_id INTEGER PRIMARY KEY AUTOINCREMENT,
           sandbox_id TEXT NOT NULL,
           status TEXT NOT NULL,
           network_policy TEXT NOT NULL,
           host TEXT NOT NULL,
           port INTEGER NOT NULL,
           binary TEXT NOT NULL,
           hits INTEGER NOT NULL,
           first_seen_ms INTEGER NOT NULL,
           last_seen_ms INTEGER NOT NULL,
           last_reason TEXT NOT NULL,
           denied_by_version INTEGER NOT NULL,
           approved_version INTEGER NOT NULL DEFAULT 0,
           UNIQUE (sandbox_id, host, port, binary)))",
                   nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(Code::kInternal, "cannot create the policy_proposals table in " + db_path + ": " + msg);
  }
}

Proposals::~Proposals() {
  if (db_) sqlite3_close(db_);
}

namespace {
template <class S>
Proposal row(S& q) {
  Proposal p;
  p.proposal_id = q.integer(0);
  p.sandbox_id = q.text(1);
  p.status = q.text(2);
  p.network_policy = q.text(3);
  p.host = q.text(4);
  p.port = static_cast<uint32_t>(q.integer(5));
  p.binary = q.text(6);
  p.hits = q.integer(7);
  p.first_seen_ms = q.integer(8);
  p.last_seen_ms = q.integer(9);
  p.last_reason = q.text(10);
  p.denied_by_version = static_cast<uint64_t>(q.integer(11));
  p.approved_version = static_cast<uint64_t>(q.integer(12));
  return p;
}
}  // namespace

std::optional<Proposal> Proposals::on_denial(const std::string& sandbox_id, const v1::Denial& d, int64_t now_ms) {
  auto p = propose(d);
  if (!p) return std::nullopt;
  std::lock_guard lock(mu_);
  {
    Stmt q(db_, R"(INSERT INTO policy_proposals (sandbox_id, status, network_policy, host, port, binary, hits,
                     first_seen_ms, last_seen_ms, last_reason, denied_by_version)
                   VALUES (?1, 'pending', ?2, ?3, ?4, ?5, 1, ?6, ?6, ?7, ?8)
                   ON CONFLICT (sandbox_id, host, port, binary) DO UPDATE SET
                     hits = hits + 1, last_seen_ms = ?6, last_reason = ?7,
                     denied_by_version = MAX(denied_by_version, ?8),
                     status = CASE WHEN status = 'approved' AND ?8 > approved_version THEN 'pending' ELSE status END)");
    q.bind(1, sandbox_id).bind(2, p->network_policy).bind(3, p->host).bind(4, static_cast<int64_t>(p->port));
    q.bind(5, p->binary).bind(6, now_ms).bind(7, p->last_reason).bind(8, static_cast<int64_t>(p->denied_by_version));
    q.step();
  }
  Stmt q(db_, (std::string("SELECT ") + kColumns +
               " FROM policy_proposals WHERE sandbox_id = ?1 AND host = ?2 AND port = ?3 AND binary = ?4")
                  .c_str());
  q.bind(1, sandbox_id).bind(2, p->host).bind(3, static_cast<int64_t>(p->port)).bind(4, p->binary);
  if (!q.step()) throw Error(Code::kInternal, "policy_proposals: the row just written is gone");
  return row(q);
}

std::vector<Proposal> Proposals::list(const std::string& sandbox_id, const std::string& status) {
  std::lock_guard lock(mu_);
  Stmt q(db_, (std::string("SELECT ") + kColumns +
               " FROM policy_proposals WHERE sandbox_id = ?1 AND (?2 = '' OR status = ?2) ORDER BY proposal_id")
                  .c_str());
  q.bind(1, sandbox_id).bind(2, status);
  std::vector<Proposal> out;
  while (q.step()) out.push_back(row(q));
  return out;
}

Proposal Proposals::get(const std::string& sandbox_id, int64_t proposal_id) {
  std::lock_guard lock(mu_);
  Stmt q(db_, (std::string("SELECT ") + kColumns + " FROM policy_proposals WHERE sandbox_id = ?1 AND proposal_id = ?2").c_str());
  q.bind(1, sandbox_id).bind(2, proposal_id);
  if (!q.step())
    throw Error(Code::kNotFound,
                "sandbox " + sandbox_id + " has no proposal " + std::to_string(proposal_id) + " (list them: bulwark policy pending NAME)",
                "proposal_id");
  return row(q);
}

Proposal Proposals::pending_one(const std::string& sandbox_id, int64_t proposal_id) {
  Proposal p = get(sandbox_id, proposal_id);
  if (p.status != "pending")
    throw Error(Code::kFailedPrecondition, "proposal " + std::to_string(proposal_id) + " is already " + p.status, "status");
  return p;
}

Proposal Proposals::approve(const std::string& sandbox_id, int64_t proposal_id,
                            const std::function<uint64_t(const Proposal&)>& apply) {
  std::lock_guard one(decide_mu_);
  Proposal p = pending_one(sandbox_id, proposal_id);
  return decide(sandbox_id, proposal_id, true, apply(p));
}

Proposal Proposals::reject(const std::string& sandbox_id, int64_t proposal_id) {
  std::lock_guard one(decide_mu_);
  pending_one(sandbox_id, proposal_id);
  return decide(sandbox_id, proposal_id, false, 0);
}

Proposal Proposals::decide(const std::string& sandbox_id, int64_t proposal_id, bool approve, uint64_t version) {
  Proposal p = get(sandbox_id, proposal_id);
  std::lock_guard lock(mu_);
  Stmt q(db_, "UPDATE policy_proposals SET status = ?1, approved_version = ?2 WHERE proposal_id = ?3 AND status = 'pending'");
  q.bind(1, std::string(approve ? "approved" : "rejected")).bind(2, static_cast<int64_t>(version)).bind(3, proposal_id);
  q.step();
  if (sqlite3_changes(db_) != 1)
    throw Error(Code::kFailedPrecondition, "proposal " + std::to_string(proposal_id) + " was decided meanwhile", "status");
  p.status = approve ? "approved" : "rejected";
  p.approved_version = version;
  return p;
}

void Proposals::drop_sandbox(const std::string& sandbox_id) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "DELETE FROM policy_proposals WHERE sandbox_id = ?1");
  q.bind(1, sandbox_id);
  q.step();
}

}  // namespace bulwark::gateway
