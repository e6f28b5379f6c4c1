#pragma once
// The gateway's durable state: sandbox records and their logs, providers (credentials sealed by
// SecretBox, never clear) and inference route tables, in one SQLite file (WAL). The gateway is the
// only writer. Records are stored whole (protobuf) next to the columns that are queried.
#include <sqlite3.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bulwark/v1/inference.pb.h"
#include "bulwark/v1/sandbox.pb.h"
#include "services/gateway-api/paging.h"
#include "services/gateway-api/sqlite_stmt.h"

namespace bulwark::gateway {

// The answer to a request made with an Idempotency-Key (idempotency.h), kept to be sent again.
struct IdempotentResponse {
  std::string fingerprint;  // request_fingerprint of the request's body
  int status = 0;
  std::string body;
  int64_t created_ms = 0;
};

// A provider as stored. The credentials are opaque here: SecretBox::seal of their JSON.
struct ProviderRow {
  std::string name;
  std::string type;
  std::string base_url;
  std::string sealed_credentials;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

// An API token as stored (tokens.h): the secret only as its SHA-256, never clear. Times in ms
// since the epoch; 0 = not set (never expires, not revoked, never used).
struct TokenRow {
  std::string token_id;
  std::string name;
  std::string scope;
  std::string secret_sha256;  // hex
  int64_t created_ms = 0;
  int64_t expires_ms = 0;
  int64_t revoked_ms = 0;
  int64_t last_used_ms = 0;
  std::string created_by;
};

// One row of the audit log (audit_log.h). seq is assigned by the store.
struct AuditRow {
  int64_t seq = 0;
  int64_t at_ms = 0;
  std::string token_id, token_name, scope, method, path, sandbox_id;
  int status = 0;
  std::string result, remote_addr, request_id;
};

class Store {
 public:
  explicit Store(const std::string& path);  // creates the file and schema; throws Error with the path
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Inserts a new record. With an idempotency key seen before, returns that record instead and sets
  // *created = false. Throws Error(kAlreadyExists, field "name") when a live sandbox has the name.
  v1::Sandbox insert(const v1::Sandbox& s, const std::string& idempotency_key, bool* created);
  // By sandbox_id, else by name (the live one, else the newest).
  std::optional<v1::Sandbox> find(const std::string& id_or_name);
  std::vector<v1::Sandbox> list(bool include_deleted);
  // One page in (created_ms, sandbox_id) order: the records after `after` (from the start when
  // nullopt) that f matches, at most limit; *more tells whether another one matches after them.
  std::vector<v1::Sandbox> page(const SandboxFilter& f, const std::optional<SandboxCursor>& after, size_t limit, bool* more);
  std::map<v1::SandboxPhase, int64_t> count_by_phase();
  std::vector<v1::Sandbox> in_phases(const std::vector<v1::SandboxPhase>& phases);
  // Read-modify-write as one step under the store's lock. fn returns true to save the change.
  // Returns the record as it is afterwards, or nullopt when there is no such sandbox_id.
  std::optional<v1::Sandbox> modify(const std::string& sandbox_id, const std::function<bool(v1::Sandbox&)>& fn);

  // Logs are keyed by the bus's stream sequence, so a redelivered line is stored once.
  void append_log(const v1::LogLine& line, uint64_t stream_seq);
  // The last `tail` lines, of one stream ("stdout", "denial", ...) or of all when stream is "".
  std::vector<v1::LogLine> logs(const std::string& sandbox_id, size_t tail, const std::string& stream = "");

  // Providers. insert: Error(kAlreadyExists, field "name") when the name is taken.
  void insert_provider(const ProviderRow& p);
  std::optional<ProviderRow> find_provider(const std::string& name);
  std::vector<ProviderRow> list_providers();  // by name
  // By name, those after `after` ("" = from the first), at most limit; *more as for page().
  std::vector<ProviderRow> list_providers(const std::string& after, size_t limit, bool* more);
  // Read-modify-write under the store's lock; fn returns true to save. nullopt when no such name.
  std::optional<ProviderRow> modify_provider(const std::string& name, const std::function<bool(ProviderRow&)>& fn);
  // False when there was none. Error(kFailedPrecondition) naming the route when an inference config
  // still uses it: checked under the same lock as put_inference, so no route is left dangling.
  bool delete_provider(const std::string& name);
  // "route 'gpt-*' of sandbox <id>" when some inference config uses the provider, else "".
  std::string provider_use(const std::string& name);

  // Inference route tables by scope: sandbox_id, "" for the global one. put: Error(kInvalidArgument,
  // field routes[i].backends[j].provider) when a backend names a provider that does not exist.
  void put_inference(const v1::InferenceConfig& c);
  std::optional<v1::InferenceConfig> find_inference(const std::string& scope);
  std::vector<v1::InferenceConfig> list_inference();
  bool delete_inference(const std::string& scope);  // false when there was none

  // Answers kept for Idempotency-Key, by scope ("POST /v1/sandboxes") and key. find ignores those
  // created before not_before_ms; save replaces; prune deletes those created before before_ms.
  std::optional<IdempotentResponse> find_idempotent(const std::string& scope, const std::string& key, int64_t not_before_ms);
  void save_idempotent(const std::string& scope, const std::string& key, const IdempotentResponse& r);
  size_t prune_idempotent(int64_t before_ms);

  // API tokens. insert: Error(kAlreadyExists) on a token_id collision (then draw another).
  void insert_token(const TokenRow& t);
  std::optional<TokenRow> find_token(const std::string& token_id);
  std::vector<TokenRow> list_tokens();  // oldest first
  size_t count_tokens();
  // Sets revoked_ms unless already revoked; nullopt when there is no such token.
  std::optional<TokenRow> revoke_token(const std::string& token_id, int64_t now_ms);
  void touch_token(const std::string& token_id, int64_t now_ms);

  // The audit log: append returns the row's seq; list gives rows with seq > since, oldest first.
  int64_t append_audit(const AuditRow& r);
  std::vector<AuditRow> list_audit(int64_t since, size_t limit);

 private:
  using Stmt = SqliteStmt;
  void exec(const char* sql);
  void save_locked(const v1::Sandbox& s);
  std::vector<v1::Sandbox> query_records(const std::string& sql);
  std::string provider_use_locked(const std::string& name);
  static ProviderRow provider_row(Stmt& q);
  static TokenRow token_row(Stmt& q);

  std::mutex mu_;
  sqlite3* db_ = nullptr;
  std::string path_;
};

}  // namespace bulwark::gateway
