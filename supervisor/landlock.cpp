#include "supervisor/landlock.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "shared/error.h"

namespace bulwark::supervisor {
namespace {

// Our own copy of the UAPI: Debian 12's <linux/landlock.h> stops at ABI 2, and mixing its struct
// with newer fields would not compile. Values are fixed by the kernel ABI.
constexpr uint32_t kCreateRulesetVersion = 1U << 0;
constexpr int kRulePathBeneath = 1;

constexpr uint64_t kExecute = 1ULL << 0;
constexpr uint64_t kWriteFile = 1ULL << 1;
constexpr uint64_t kReadFile = 1ULL << 2;
constexpr uint64_t kReadDir = 1ULL << 3;
constexpr uint64_t kRemoveDir = 1ULL << 4;
constexpr uint64_t kRemoveFile = 1ULL << 5;
constexpr uint64_t kMakeChar = 1ULL << 6;
constexpr uint64_t kMakeDir = 1ULL << 7;
constexpr uint64_t kMakeReg = 1ULL << 8;
constexpr uint64_t kMakeSock = 1ULL << 9;
constexpr uint64_t kMakeFifo = 1ULL << 10;
constexpr uint64_t kMakeBlock = 1ULL << 11;
constexpr uint64_t kMakeSym = 1ULL << 12;
constexpr uint64_t kRefer = 1ULL << 13;     // ABI 2
constexpr uint64_t kTruncate = 1ULL << 14;  // ABI 3
constexpr uint64_t kIoctlDev = 1ULL << 15;  // ABI 5

constexpr uint64_t kScopeAbstractUnixSocket = 1ULL << 0;  // ABI 6
constexpr uint64_t kScopeSignal = 1ULL << 1;              // ABI 6

constexpr uint32_t kRestrictSelfLogNewExecOn = 1U << 1;  // ABI 7

// The rights that make sense on a non-directory; the kernel rejects a rule on a file with more.
constexpr uint64_t kFileRights = kExecute | kWriteFile | kReadFile | kTruncate | kIoctlDev;
constexpr uint64_t kReadOnlyRights = kExecute | kReadFile | kReadDir;

struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;  // ABI 4
  uint64_t scoped;              // ABI 6
};

struct __attribute__((packed)) PathBeneathAttr {
  uint64_t allowed_access;
  int32_t parent_fd;
};

// Every filesystem right the given ABI knows: handling them all is what makes the ruleset
// deny-by-default (a right the ruleset does not handle stays allowed everywhere).
uint64_t handled_fs(int abi) {
  uint64_t r = kExecute | kWriteFile | kReadFile | kReadDir | kRemoveDir | kRemoveFile |
               kMakeChar | kMakeDir | kMakeReg | kMakeSock | kMakeFifo | kMakeBlock | kMakeSym;
  if (abi >= 2) r |= kRefer;
  if (abi >= 3) r |= kTruncate;
  if (abi >= 5) r |= kIoctlDev;
  return r;
}

// The attribute size an ABI understands. Newer kernels accept the larger struct with zero tail
// anyway; passing the exact size keeps older ones from having to.
size_t ruleset_attr_size(int abi) {
  if (abi >= 6) return sizeof(RulesetAttr);
  if (abi >= 4) return offsetof(RulesetAttr, scoped);
  return offsetof(RulesetAttr, handled_access_net);
}

// The ABI version, or -errno when Landlock is unavailable (ENOSYS: not built; EOPNOTSUPP: not
// enabled at boot).
int query_abi() {
  long v = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, kCreateRulesetVersion);
  return v < 0 ? -errno : static_cast<int>(v);
}

uint64_t rights_for(bool read_write, const struct stat& st, uint64_t handled) {
  uint64_t want = (read_write ? handled : kReadOnlyRights) & handled;
  if (!S_ISDIR(st.st_mode)) {
    want &= kFileRights;
    // IOCTL_DEV only means something on device files; keep it off the rest.
    if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) want &= ~kIoctlDev;
  }
  return want;
}

void add_path_rules(LandlockPlan& plan, const std::vector<std::string>& paths, bool read_write,
                    bool hard, uint64_t handled) {
  const char* list = read_write ? "read_write" : "read_only";
  for (const auto& path : paths) {
    // O_PATH: the rule needs the inode, not read access to it (a directory the supervisor could
    // not list is still a valid rule).
    Fd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
    if (!fd) {
      int e = errno;
      if (!hard && (e == ENOENT || e == ENOTDIR)) {
        plan.skipped.push_back(path + ": path does not exist (" + errno_text("open", e) + ")");
        continue;
      }
      throw Error(Code::kFailedPrecondition,
                  errno_text("landlock: open(" + path + ") for a " + list + " rule", e),
                  std::string("landlock.") + list);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      throw Error(Code::kInternal, errno_text("landlock: fstat(" + path + ")", errno));
    }
    PathBeneathAttr attr{};
    attr.allowed_access = rights_for(read_write, st, handled);
    attr.parent_fd = fd.get();
    if (::syscall(SYS_landlock_add_rule, plan.ruleset.get(), kRulePathBeneath, &attr, 0) != 0) {
      throw Error(Code::kInternal,
                  errno_text("landlock: landlock_add_rule(" + path + ", " + list + ")", errno),
                  std::string("landlock.") + list);
    }
  }
}

}  // namespace

int landlock_abi() {
  int v = query_abi();
  return v < 0 ? 0 : v;
}

LandlockPlan landlock_prepare(const LandlockRules& rules) {
  LandlockPlan plan;
  int v = query_abi();
  if (v <= 0) {
    std::string why = errno_text("landlock: landlock_create_ruleset(VERSION)", v < 0 ? -v : ENOSYS);
    if (rules.hard_requirement) {
      throw Error(Code::kFailedPrecondition, why + ": this kernel offers no Landlock");
    }
    plan.unenforced.push_back(why + ": the filesystem is not confined by Landlock");
    return plan;
  }
  plan.abi = v;

  if (plan.abi < 3) plan.unenforced.push_back("truncate (Landlock ABI 3): truncate and O_TRUNC are not restricted");
  if (plan.abi < 5) plan.unenforced.push_back("ioctl_dev (Landlock ABI 5): ioctl on device files is not restricted");
  if (plan.abi < 6) {
    plan.unenforced.push_back(
        "scoped signal and abstract_unix_socket (Landlock ABI 6): the agent can signal and reach "
        "abstract sockets outside its domain");
  }
  if (rules.audit_denials) {
    if (plan.abi >= 7) {
      plan.restrict_flags |= kRestrictSelfLogNewExecOn;
    } else {
      plan.unenforced.push_back("audit_denials (Landlock ABI 7): denials are not logged after exec");
    }
  }

  RulesetAttr attr{};
  attr.handled_access_fs = handled_fs(plan.abi);
  if (plan.abi >= 6) {
    // Scoping is about what the agent reaches outside its own domain, which is everything else
    // on the box, the supervisor included: without SIGNAL the agent (same uid after the identity
    // drop, or root) could kill or stop the supervisor and so end the reporting and enforcement
    // it does; without ABSTRACT_UNIX_SOCKET it could connect to abstract sockets of the host or
    // other processes in a shared network namespace, which have no path for the filesystem rules
    // to cover (the container-shim escape, CVE-2020-15257). The supervisor may still signal the
    // agent: the scope only limits the restricted side.
    attr.scoped = kScopeAbstractUnixSocket | kScopeSignal;
  }
  long fd = ::syscall(SYS_landlock_create_ruleset, &attr, ruleset_attr_size(plan.abi), 0);
  if (fd < 0) {
    throw Error(Code::kInternal,
                errno_text("landlock: landlock_create_ruleset(abi " + std::to_string(plan.abi) + ")",
                           errno));
  }
  plan.ruleset = Fd(static_cast<int>(fd));

  add_path_rules(plan, rules.read_only, false, rules.hard_requirement, attr.handled_access_fs);
  add_path_rules(plan, rules.read_write, true, rules.hard_requirement, attr.handled_access_fs);
  return plan;
}

void landlock_enforce(LandlockPlan& plan) {
  if (plan.abi == 0) return;  // best effort on a kernel without Landlock; already reported
  if (!plan.ruleset) {
    throw Error(Code::kFailedPrecondition,
                "landlock: the plan has no ruleset (already enforced, or moved from)");
  }
  int nnp = ::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
  if (nnp < 0) throw Error(Code::kInternal, errno_text("landlock: prctl(PR_GET_NO_NEW_PRIVS)", errno));
  if (nnp != 1) {
    throw Error(Code::kFailedPrecondition,
                "landlock: no_new_privs is not set; call prctl(PR_SET_NO_NEW_PRIVS, 1) first");
  }
  if (::syscall(SYS_landlock_restrict_self, plan.ruleset.get(), plan.restrict_flags) != 0) {
    throw Error(Code::kInternal, errno_text("landlock: landlock_restrict_self", errno));
  }
  plan.ruleset.reset();  // the domain is in place; the agent has no use for the fd
}

}  // namespace bulwark::supervisor
