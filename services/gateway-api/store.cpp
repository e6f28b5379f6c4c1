#include "services/gateway-api/store.h"

#include "services/gateway-api/lifecycle.h"
#include "shared/error.h"
#include "shared/util.h"

namespace bulwark::gateway {

Store::Store(const std::string& path) : path_(path) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(Code::kUnavailable, "cannot open the gateway database " + path + ": " + msg);
  }
  sqlite3_busy_timeout(db_, 5000);
  exec("PRAGMA journal_mode=WAL");
  exec("PRAGMA synchronous=NORMAL");
  exec("PRAGMA foreign_keys=ON");
  exec(R"(CREATE TABLE IF NOT EXISTS sandboxes (
           sandbox_id TEXT PRIMARY KEY,
           name TEXT NOT NULL,
           phase INTEGER NOT NULL,
           live INTEGER NOT NULL,
           idempotency_key TEXT UNIQUE,
           created_ms INTEGER NOT NULL,
           record BLOB NOT NULL))");
  // A name belongs to at most one live sandbox; deleted ones keep theirs for audit.
  exec("CREATE UNIQUE INDEX IF NOT EXISTS sandboxes_live_name ON sandboxes(name) WHERE live = 1");
  // The list order, which pages walk with a (created_ms, sandbox_id) cursor.
  exec("CREATE INDEX IF NOT EXISTS sandboxes_order ON sandboxes(created_ms, sandbox_id)");
  exec(R"(CREATE TABLE IF NOT EXISTS logs (
           sandbox_id TEXT NOT NULL,
           stream_seq INTEGER NOT NULL,
           record BLOB NOT NULL,
           PRIMARY KEY (sandbox_id, stream_seq)))");
  // Added with denial events: a database from before gets the column (old lines read as "").
  bool has_stream = false;
  {
    Stmt q(db_, "SELECT name FROM pragma_table_info('logs')");
    while (q.step()) has_stream = has_stream || q.text(0) == "stream";
  }
  if (!has_stream) exec("ALTER TABLE logs ADD COLUMN stream TEXT NOT NULL DEFAULT ''");
  // credentials: SecretBox-sealed JSON (never clear). A row does not open under another name.
  exec(R"(CREATE TABLE IF NOT EXISTS providers (
           name TEXT PRIMARY KEY,
           type TEXT NOT NULL,
           base_url TEXT NOT NULL,
           credentials TEXT NOT NULL,
           created_ms INTEGER NOT NULL,
           updated_ms INTEGER NOT NULL))");
  // scope: "" for the global route table, else a sandbox_id. record: the InferenceConfig protobuf.
  exec(R"(CREATE TABLE IF NOT EXISTS inference_configs (
           scope TEXT PRIMARY KEY,
           record BLOB NOT NULL))");
  // Answers to creates made with an Idempotency-Key; pruned after a day (idempotency.h).
  exec(R"(CREATE TABLE IF NOT EXISTS idempotency (
           scope TEXT NOT NULL,
           key TEXT NOT NULL,
           fingerprint TEXT NOT NULL,
           status INTEGER NOT NULL,
           body BLOB NOT NULL,
           created_ms INTEGER NOT NULL,
           PRIMARY KEY (scope, key)))");
  // API tokens (tokens.h): secret_sha256 only, the secret itself is never stored.
  exec(R"(CREATE TABLE IF NOT EXISTS tokens (
           token_id TEXT PRIMARY KEY,
           name TEXT NOT NULL,
           scope TEXT NOT NULL,
           secret_sha256 TEXT NOT NULL,
           created_ms INTEGER NOT NULL,
           expires_ms INTEGER NOT NULL DEFAULT 0,
           revoked_ms INTEGER NOT NULL DEFAULT 0,
           last_used_ms INTEGER NOT NULL DEFAULT 0,
           created_by TEXT NOT NULL DEFAULT ''))");
  // Every mutating REST call (audit_log.h); seq is the rowid, so ?since= pages in order.
  exec(R"(CREATE TABLE IF NOT EXISTS audit (
           seq INTEGER PRIMARY KEY AUTOINCREMENT,
           at_ms INTEGER NOT NULL,
           token_id TEXT NOT NULL,
           token_name TEXT NOT NULL,
           scope TEXT NOT NULL,
           method TEXT NOT NULL,
           path TEXT NOT NULL,
           sandbox_id TEXT NOT NULL,
           status INTEGER NOT NULL,
           result TEXT NOT NULL,
           remote_addr TEXT NOT NULL,
           request_id TEXT NOT NULL))");
}

Store::~Store() { sqlite3_close(db_); }

void Store::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw Error(Code::kInternal, "sqlite (" + path_ + "): " + msg + " in: " + sql);
  }
}

namespace {
// EXITED keeps its name: the workload still exists until it is deleted.
int64_t live_flag(const v1::Sandbox& s) { return s.phase() == v1::DELETED ? 0 : 1; }

v1::Sandbox parse_record(const std::string& blob) {
  v1::Sandbox s;
  if (!s.ParseFromString(blob)) throw Error(Code::kInternal, "corrupt sandbox record in the gateway database");
  return s;
}
}  // namespace

v1::Sandbox Store::insert(const v1::Sandbox& s, const std::string& key, bool* created) {
  std::lock_guard lock(mu_);
  if (!key.empty()) {
    Stmt q(db_, "SELECT record FROM sandboxes WHERE idempotency_key = ?");
    q.bind(1, key);
    if (q.step()) {
      *created = false;
      return parse_record(q.text(0));
    }
  }
  Stmt q(db_, "SELECT 1 FROM sandboxes WHERE name = ? AND live = 1");
  q.bind(1, s.name());
  if (q.step())
    throw Error(Code::kAlreadyExists, "a sandbox named '" + s.name() + "' already exists; delete it or pick another name",
                "name");
  Stmt ins(db_, "INSERT INTO sandboxes(sandbox_id, name, phase, live, idempotency_key, created_ms, record) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)");
  ins.bind(1, s.sandbox_id()).bind(2, s.name()).bind(3, static_cast<int64_t>(s.phase())).bind(4, live_flag(s));
  if (key.empty()) ins.bind_null(5);
  else ins.bind(5, key);
  ins.bind(6, to_millis(s.created_at())).bind_blob(7, s.SerializeAsString());
  ins.step();
  *created = true;
  return s;
}

std::optional<v1::Sandbox> Store::find(const std::string& id_or_name) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT record FROM sandboxes WHERE sandbox_id = ?1 OR name = ?1 "
              "ORDER BY sandbox_id = ?1 DESC, live DESC, created_ms DESC LIMIT 1");
  q.bind(1, id_or_name);
  if (!q.step()) return std::nullopt;
  return parse_record(q.text(0));
}

std::vector<v1::Sandbox> Store::query_records(const std::string& sql) {
  std::lock_guard lock(mu_);
  Stmt q(db_, sql);
  std::vector<v1::Sandbox> out;
  while (q.step()) out.push_back(parse_record(q.text(0)));
  return out;
}

std::vector<v1::Sandbox> Store::list(bool include_deleted) {
  return query_records(std::string("SELECT record FROM sandboxes") + (include_deleted ? "" : " WHERE live = 1") +
                       " ORDER BY created_ms, sandbox_id");
}

std::vector<v1::Sandbox> Store::page(const SandboxFilter& f, const std::optional<SandboxCursor>& after, size_t limit,
                                     bool* more) {
  std::string sql = "SELECT record FROM sandboxes WHERE (?1 = 1 OR live = 1)";
  if (!f.phases.empty()) {
    std::string in;
    for (auto p : f.phases) in += (in.empty() ? "" : ",") + std::to_string(static_cast<int>(p));
    sql += " AND phase IN (" + in + ")";
  }
  if (after) sql += " AND (created_ms > ?2 OR (created_ms = ?2 AND sandbox_id > ?3))";
  sql += " ORDER BY created_ms, sandbox_id";
  std::lock_guard lock(mu_);
  Stmt q(db_, sql);
  q.bind(1, static_cast<int64_t>(f.include_deleted ? 1 : 0));
  if (after) q.bind(2, after->created_ms).bind(3, after->sandbox_id);
  std::vector<v1::Sandbox> out;
  *more = false;
  // Labels live in the record, so they are matched here; the scan stops one match past the page.
  while (q.step()) {
    auto s = parse_record(q.text(0));
    if (!f.matches(s)) continue;
    if (out.size() == limit) {
      *more = true;
      break;
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::map<v1::SandboxPhase, int64_t> Store::count_by_phase() {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT phase, COUNT(*) FROM sandboxes GROUP BY phase");
  std::map<v1::SandboxPhase, int64_t> out;
  while (q.step()) out[static_cast<v1::SandboxPhase>(q.integer(0))] = q.integer(1);
  return out;
}

std::vector<v1::Sandbox> Store::in_phases(const std::vector<v1::SandboxPhase>& phases) {
  std::string in;
  for (auto p : phases) in += (in.empty() ? "" : ",") + std::to_string(static_cast<int>(p));
  return query_records("SELECT record FROM sandboxes WHERE phase IN (" + in + ") ORDER BY created_ms");
}

void Store::save_locked(const v1::Sandbox& s) {
  Stmt q(db_, "UPDATE sandboxes SET phase = ?, live = ?, record = ? WHERE sandbox_id = ?");
  q.bind(1, static_cast<int64_t>(s.phase())).bind(2, live_flag(s)).bind_blob(3, s.SerializeAsString()).bind(4, s.sandbox_id());
  q.step();
}

std::optional<v1::Sandbox> Store::modify(const std::string& sandbox_id, const std::function<bool(v1::Sandbox&)>& fn) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT record FROM sandboxes WHERE sandbox_id = ?");
  q.bind(1, sandbox_id);
  if (!q.step()) return std::nullopt;
  auto s = parse_record(q.text(0));
  if (fn(s)) save_locked(s);
  return s;
}

void Store::append_log(const v1::LogLine& line, uint64_t stream_seq) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "INSERT OR IGNORE INTO logs(sandbox_id, stream_seq, record, stream) VALUES (?, ?, ?, ?)");
  q.bind(1, line.sandbox_id()).bind(2, static_cast<int64_t>(stream_seq)).bind_blob(3, line.SerializeAsString()).bind(4, line.stream());
  q.step();
}

std::vector<v1::LogLine> Store::logs(const std::string& sandbox_id, size_t tail, const std::string& stream) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT record FROM (SELECT record, stream_seq FROM logs WHERE sandbox_id = ? AND (? = '' OR stream = ?) "
              "ORDER BY stream_seq DESC LIMIT ?) ORDER BY stream_seq");
  q.bind(1, sandbox_id).bind(2, stream).bind(3, stream).bind(4, static_cast<int64_t>(tail));
  std::vector<v1::LogLine> out;
  while (q.step()) {
    v1::LogLine l;
    if (l.ParseFromString(q.text(0))) out.push_back(std::move(l));
  }
  return out;
}

namespace {
constexpr const char* kProviderCols = "SELECT name, type, base_url, credentials, created_ms, updated_ms FROM providers";

v1::InferenceConfig parse_config(const std::string& blob) {
  v1::InferenceConfig c;
  if (!c.ParseFromString(blob)) throw Error(Code::kInternal, "corrupt inference config in the gateway database");
  return c;
}

std::string scope_name(const std::string& scope) { return scope.empty() ? "the global table" : "sandbox " + scope; }
}  // namespace

ProviderRow Store::provider_row(Stmt& q) {
  return ProviderRow{q.text(0), q.text(1), q.text(2), q.text(3), q.integer(4), q.integer(5)};
}

void Store::insert_provider(const ProviderRow& p) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "INSERT OR IGNORE INTO providers(name, type, base_url, credentials, created_ms, updated_ms) "
              "VALUES (?, ?, ?, ?, ?, ?)");
  q.bind(1, p.name).bind(2, p.type).bind(3, p.base_url).bind(4, p.sealed_credentials).bind(5, p.created_ms).bind(6, p.updated_ms);
  q.step();
  if (sqlite3_changes(db_) == 0)
    throw Error(Code::kAlreadyExists, "a provider named '" + p.name + "' already exists; update it or pick another name",
                "name");
}

std::optional<ProviderRow> Store::find_provider(const std::string& name) {
  std::lock_guard lock(mu_);
  Stmt q(db_, std::string(kProviderCols) + " WHERE name = ?");
  q.bind(1, name);
  if (!q.step()) return std::nullopt;
  return provider_row(q);
}

std::vector<ProviderRow> Store::list_providers() {
  std::lock_guard lock(mu_);
  Stmt q(db_, std::string(kProviderCols) + " ORDER BY name");
  std::vector<ProviderRow> out;
  while (q.step()) out.push_back(provider_row(q));
  return out;
}

std::vector<ProviderRow> Store::list_providers(const std::string& after, size_t limit, bool* more) {
  std::lock_guard lock(mu_);
  Stmt q(db_, std::string(kProviderCols) + " WHERE name > ? ORDER BY name LIMIT ?");
  q.bind(1, after).bind(2, static_cast<int64_t>(limit) + 1);
  std::vector<ProviderRow> out;
  while (q.step()) out.push_back(provider_row(q));
  *more = out.size() > limit;
  if (*more) out.pop_back();
  return out;
}

std::optional<ProviderRow> Store::modify_provider(const std::string& name, const std::function<bool(ProviderRow&)>& fn) {
  std::lock_guard lock(mu_);
  Stmt q(db_, std::string(kProviderCols) + " WHERE name = ?");
  q.bind(1, name);
  if (!q.step()) return std::nullopt;
  auto p = provider_row(q);
  if (fn(p)) {
    Stmt u(db_, "UPDATE providers SET base_url = ?, credentials = ?, updated_ms = ? WHERE name = ?");
    u.bind(1, p.base_url).bind(2, p.sealed_credentials).bind(3, p.updated_ms).bind(4, name);
    u.step();
  }
  return p;
}

std::string Store::provider_use_locked(const std::string& name) {
  Stmt q(db_, "SELECT record FROM inference_configs ORDER BY scope");
  while (q.step()) {
    auto c = parse_config(q.text(0));
    for (const auto& r : c.routes())
      for (const auto& b : r.backends())
        if (b.provider() == name) return "route '" + r.match() + "' of " + scope_name(c.sandbox_id());
  }
  return "";
}

std::string Store::provider_use(const std::string& name) {
  std::lock_guard lock(mu_);
  return provider_use_locked(name);
}

bool Store::delete_provider(const std::string& name) {
  std::lock_guard lock(mu_);
  if (auto use = provider_use_locked(name); !use.empty())
    throw Error(Code::kFailedPrecondition,
                "provider '" + name + "' is used by inference " + use + ": change or delete that route first", "name");
  Stmt q(db_, "DELETE FROM providers WHERE name = ?");
  q.bind(1, name);
  q.step();
  return sqlite3_changes(db_) > 0;
}

void Store::put_inference(const v1::InferenceConfig& c) {
  std::lock_guard lock(mu_);
  for (int i = 0; i < c.routes_size(); ++i)
    for (int j = 0; j < c.routes(i).backends_size(); ++j) {
      const auto& name = c.routes(i).backends(j).provider();
      Stmt q(db_, "SELECT 1 FROM providers WHERE name = ?");
      q.bind(1, name);
      if (!q.step()) {
        std::string field = "routes[" + std::to_string(i) + "].backends[" + std::to_string(j) + "].provider";
        throw Error(Code::kInvalidArgument, field + ": no provider named '" + name + "'", field);
      }
    }
  Stmt q(db_, "INSERT INTO inference_configs(scope, record) VALUES (?, ?) "
              "ON CONFLICT(scope) DO UPDATE SET record = excluded.record");
  q.bind(1, c.sandbox_id()).bind_blob(2, c.SerializeAsString());
  q.step();
}

std::optional<v1::InferenceConfig> Store::find_inference(const std::string& scope) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT record FROM inference_configs WHERE scope = ?");
  q.bind(1, scope);
  if (!q.step()) return std::nullopt;
  return parse_config(q.text(0));
}

std::vector<v1::InferenceConfig> Store::list_inference() {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT record FROM inference_configs ORDER BY scope");
  std::vector<v1::InferenceConfig> out;
  while (q.step()) out.push_back(parse_config(q.text(0)));
  return out;
}

bool Store::delete_inference(const std::string& scope) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "DELETE FROM inference_configs WHERE scope = ?");
  q.bind(1, scope);
  q.step();
  return sqlite3_changes(db_) > 0;
}

std::optional<IdempotentResponse> Store::find_idempotent(const std::string& scope, const std::string& key,
                                                        int64_t not_before_ms) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT fingerprint, status, body, created_ms FROM idempotency WHERE scope = ? AND key = ? AND created_ms >= ?");
  q.bind(1, scope).bind(2, key).bind(3, not_before_ms);
  if (!q.step()) return std::nullopt;
  return IdempotentResponse{q.text(0), static_cast<int>(q.integer(1)), q.text(2), q.integer(3)};
}

void Store::save_idempotent(const std::string& scope, const std::string& key, const IdempotentResponse& r) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "INSERT OR REPLACE INTO idempotency(scope, key, fingerprint, status, body, created_ms) VALUES (?, ?, ?, ?, ?, ?)");
  q.bind(1, scope).bind(2, key).bind(3, r.fingerprint).bind(4, static_cast<int64_t>(r.status)).bind_blob(5, r.body).bind(6, r.created_ms);
  q.step();
}

size_t Store::prune_idempotent(int64_t before_ms) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "DELETE FROM idempotency WHERE created_ms < ?");
  q.bind(1, before_ms);
  q.step();
  return static_cast<size_t>(sqlite3_changes(db_));
}

namespace {
constexpr const char* kTokenCols =
    "SELECT token_id, name, scope, secret_sha256, created_ms, expires_ms, revoked_ms, last_used_ms, created_by FROM tokens";
}  // namespace

TokenRow Store::token_row(Stmt& q) {
  return TokenRow{q.text(0), q.text(1), q.text(2), q.text(3), q.integer(4), q.integer(5), q.integer(6), q.integer(7), q.text(8)};
}

void Store::insert_token(const TokenRow& t) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "INSERT INTO tokens(token_id, name, scope, secret_sha256, created_ms, expires_ms, revoked_ms, last_used_ms, "
              "created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  q.bind(1, t.token_id).bind(2, t.name).bind(3, t.scope).bind(4, t.secret_sha256).bind(5, t.created_ms).bind(6, t.expires_ms);
  q.bind(7, t.revoked_ms).bind(8, t.last_used_ms).bind(9, t.created_by);
  q.step();
}

std::optional<TokenRow> Store::find_token(const std::string& token_id) {
  std::lock_guard lock(mu_);
  Stmt q(db_, std::string(kTokenCols) + " WHERE token_id = ?");
  q.bind(1, token_id);
  if (!q.step()) return std::nullopt;
  return token_row(q);
}

std::vector<TokenRow> Store::list_tokens() {
  std::lock_guard lock(mu_);
  Stmt q(db_, std::string(kTokenCols) + " ORDER BY created_ms, token_id");
  std::vector<TokenRow> out;
  while (q.step()) out.push_back(token_row(q));
  return out;
}

size_t Store::count_tokens() {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT COUNT(*) FROM tokens");
  q.step();
  return static_cast<size_t>(q.integer(0));
}

std::optional<TokenRow> Store::revoke_token(const std::string& token_id, int64_t now_ms) {
  std::lock_guard lock(mu_);
  Stmt u(db_, "UPDATE tokens SET revoked_ms = ? WHERE token_id = ? AND revoked_ms = 0");
  u.bind(1, now_ms).bind(2, token_id);
  u.step();
  Stmt q(db_, std::string(kTokenCols) + " WHERE token_id = ?");
  q.bind(1, token_id);
  if (!q.step()) return std::nullopt;
  return token_row(q);
}

void Store::touch_token(const std::string& token_id, int64_t now_ms) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "UPDATE tokens SET last_used_ms = ? WHERE token_id = ?");
  q.bind(1, now_ms).bind(2, token_id);
  q.step();
}

int64_t Store::append_audit(const AuditRow& r) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "INSERT INTO audit(at_ms, token_id, token_name, scope, method, path, sandbox_id, status, result, remote_addr, "
              "request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  q.bind(1, r.at_ms).bind(2, r.token_id).bind(3, r.token_name).bind(4, r.scope).bind(5, r.method).bind(6, r.path);
  q.bind(7, r.sandbox_id).bind(8, static_cast<int64_t>(r.status)).bind(9, r.result).bind(10, r.remote_addr).bind(11, r.request_id);
  q.step();
  return sqlite3_last_insert_rowid(db_);
}

std::vector<AuditRow> Store::list_audit(int64_t since, size_t limit) {
  std::lock_guard lock(mu_);
  Stmt q(db_, "SELECT seq, at_ms, token_id, token_name, scope, method, path, sandbox_id, status, result, remote_addr, request_id "
              "FROM audit WHERE seq > ? ORDER BY seq LIMIT ?");
  q.bind(1, since).bind(2, static_cast<int64_t>(limit));
  std::vector<AuditRow> out;
  while (q.step())
    out.push_back(AuditRow{q.integer(0), q.integer(1), q.text(2), q.text(3), q.text(4), q.text(5), q.text(6), q.text(7),
                           static_cast<int>(q.integer(8)), q.text(9), q.text(10), q.text(11)});
  return out;
}

}  // namespace bulwark::gateway
