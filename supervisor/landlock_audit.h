#pragma once
// Landlock's denials for one sandbox, read from the kernel audit log (Landlock ABI 7 writes one
// LANDLOCK_ACCESS record per denied access, and one LANDLOCK_DOMAIN record naming the process
// that made the domain the first time the domain denies something). The host's audit stream
// holds every sandbox's records: the agent's init sets its comm to a tag unique to its sandbox
// while it restricts itself, so the domain record tells which domains are ours.
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "shared/process.h"

namespace bulwark::supervisor {

inline constexpr int kAuditLandlockAccess = 1423;  // AUDIT_LANDLOCK_ACCESS (Linux 6.15)
inline constexpr int kAuditLandlockDomain = 1424;  // AUDIT_LANDLOCK_DOMAIN

// Pure: feed it every audit record; it returns the denial lines that belong to the tagged
// sandbox ("landlock fs.write_file path=\"/etc/x\" ..."). The first access record of a domain
// comes before the domain record that identifies it, so a few unknown ones wait.
class LandlockDenialFilter {
 public:
  explicit LandlockDenialFilter(std::string tag) : tag_(std::move(tag)) {}
  std::vector<std::string> feed(int type, const std::string& text);

 private:
  std::string tag_;
  std::set<std::string> domains_;                           // ours
  std::vector<std::pair<std::string, std::string>> waiting_;  // (domain, denial) not yet known
};

// Reads the audit log in a thread and calls on_denial for this sandbox's Landlock denials.
class LandlockAuditLog {
 public:
  // Throws bulwark::Error when the audit log cannot be read (no CAP_AUDIT_READ, audit not built).
  LandlockAuditLog(std::string tag, std::function<void(const std::string&)> on_denial);
  ~LandlockAuditLog();
  LandlockAuditLog(const LandlockAuditLog&) = delete;
  LandlockAuditLog& operator=(const LandlockAuditLog&) = delete;

 private:
  Fd sock_, stop_r_, stop_w_;
  std::thread thread_;
};

}  // namespace bulwark::supervisor
