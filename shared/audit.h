#pragma once
// The kernel audit subsystem, over NETLINK_AUDIT: the only channel through which Landlock (ABI 7)
// reports the accesses it denied. Used by the supervisor (to read its sandbox's denials) and by
// drivers (to switch audit on for the containers they start, which cannot do it themselves).
#include <functional>
#include <string>

#include "shared/process.h"

namespace bulwark::audit {

// Whether the kernel emits audit records at all (AUDIT_GET). Throws bulwark::Error when audit is
// not built into the kernel or cannot be asked.
bool enabled();

// Switches audit on when it is off (AUDIT_SET). Needs CAP_AUDIT_CONTROL in the initial user and
// PID namespaces (a container cannot). Returns "" on success, else why not. With no audit daemon
// the kernel also prints each record to its log (rate-limited): see docs/security.md.
std::string ensure_enabled();

// A socket on the audit log's read-only multicast group (needs CAP_AUDIT_READ and the initial
// network namespace). Throws bulwark::Error naming what failed.
Fd open_reader();

// Reads records until stop_fd is readable (then until the log is quiet for 50 ms, at most 500 ms) or the socket
// fails: on_record(type, text), where text
// is the record without its "audit(time:serial): " prefix.
void read_records(int sock, int stop_fd, const std::function<void(int type, const std::string& text)>& on_record);

}  // namespace bulwark::audit
