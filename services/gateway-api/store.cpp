#include "services/gateway-api/store.h"

#include "services/gateway-api/lifecycle.h"
#include "shared/error.h"
#include "shared/util.h"

namespace bulwark::gateway {

// A prepared statement, finalized when it goes out of scope.
struct Store::Stmt {
  Stmt(sqlite3* db, const std::string& sql) : db(db) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK)
      throw Error(Code::kInternal, "sqlite prepare: " + std::string(sqlite3_errmsg(db)) + " in: " + sql);
  }
  ~Stmt() { sqlite3_finalize(st); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(st, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind_blob(int i, const std::string& v) {
    sqlite3_bind_blob(st, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(st, i, v);
    return *this;
  }
  Stmt& bind_null(int i) {
    sqlite3_bind_null(st, i);
    return *this;
  }
  bool step() {  // true while a row is available
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw Error(rc == SQLITE_CONSTRAINT ? Code::kAlreadyExists : Code::kInternal,
                "sqlite: " + std::string(sqlite3_errmsg(db)));
  }
  std::string text(int col) {
    auto* p = static_cast<const char*>(sqlite3_column_blob(st, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(st, col))) : std::string();
  }
  int64_t integer(int col) { return sqlite3_column_int64(st, col); }

  sqlite3* db;
  sqlite3_stmt* st = nullptr;
};

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

}  // namespace bulwark::gateway
