#pragma once
// A prepared SQLite statement, finalized when it goes out of scope: the one helper behind the
// gateway's tables (store.cpp, proposals.cpp), which share one database file.
#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <utility>

#include "shared/error.h"

namespace bulwark::gateway {

class SqliteStmt {
 public:
  // table: named in step()'s errors ("sqlite (policy_proposals): ...") when not empty.
  SqliteStmt(sqlite3* db, const std::string& sql, std::string table = {}) : db(db), table_(std::move(table)) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK)
      throw Error(Code::kInternal, "sqlite prepare: " + std::string(sqlite3_errmsg(db)) + " in: " + sql);
  }
  ~SqliteStmt() { sqlite3_finalize(st); }
  SqliteStmt(const SqliteStmt&) = delete;
  SqliteStmt& operator=(const SqliteStmt&) = delete;
  SqliteStmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(st, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  SqliteStmt& bind_blob(int i, const std::string& v) {
    sqlite3_bind_blob(st, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  SqliteStmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(st, i, v);
    return *this;
  }
  SqliteStmt& bind_null(int i) {
    sqlite3_bind_null(st, i);
    return *this;
  }
  bool step() {  // true while a row is available
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw Error(rc == SQLITE_CONSTRAINT ? Code::kAlreadyExists : Code::kInternal,
                (table_.empty() ? std::string("sqlite: ") : "sqlite (" + table_ + "): ") + sqlite3_errmsg(db));
  }
  // A text or blob column's bytes as they are ("" for NULL).
  std::string text(int col) {
    auto* p = static_cast<const char*>(sqlite3_column_blob(st, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(st, col))) : std::string();
  }
  int64_t integer(int col) { return sqlite3_column_int64(st, col); }

  sqlite3* db;
  sqlite3_stmt* st = nullptr;

 private:
  std::string table_;
};

}  // namespace bulwark::gateway
