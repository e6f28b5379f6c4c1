#pragma once
// Who the agent runs as: never root. Resolved from the sandbox's own /etc/passwd and /etc/group
// (read as files: the supervisor must not load the image's NSS modules), and dropped for good:
// supplementary groups, gid, uid, the capability bounding set and ambient capabilities.
#include <sys/types.h>

#include <optional>
#include <string>

namespace bulwark::supervisor {

inline constexpr uid_t kDefaultSandboxId = 1000;  // "sandbox" when the image has no such entry

struct Identity {
  uid_t uid;
  gid_t gid;
};

// run_as_user / run_as_group as the policy gives them (unset = "sandbox"). Numeric ids are taken
// as they are; names are looked up in passwd/group files. Root is refused.
Identity resolve_identity(const std::optional<std::string>& user, const std::optional<std::string>& group,
                          const std::string& passwd = "/etc/passwd", const std::string& groups = "/etc/group");

// Irreversible. Clears the bounding set first (needs CAP_SETPCAP), then groups, gid, uid; then
// checks that root cannot be regained. Throws Error naming the step and errno.
void drop_identity(const Identity& id);

}  // namespace bulwark::supervisor
