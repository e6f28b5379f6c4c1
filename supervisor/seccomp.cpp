#include "supervisor/seccomp.h"

#include <linux/netlink.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "shared/error.h"

namespace bulwark::supervisor {
namespace {

// One entry of the deny list. The filter and docs/seccomp.md are both generated from this table,
// so they cannot drift apart.
struct Rule {
  std::string syscall;    // libseccomp's name for it
  std::string condition;  // for the docs; empty = always
  std::string reason;
  int err = EPERM;
  // Each inner vector is one filter rule whose comparisons must all hold; several inner vectors
  // mean "any of these". Empty: the call is denied whatever its arguments.
  std::vector<std::vector<scmp_arg_cmp>> when;
};

// Arguments declared int or unsigned int in the kernel arrive in a 64-bit register whose upper
// half the kernel ignores but seccomp sees. Comparing only the low 32 bits (mask) stops a caller
// from dodging an equality test with garbage in the upper half.
constexpr uint64_t kLow32 = 0xffffffffULL;

struct NsFlag {
  uint64_t flag;
  const char* name;
};
// CLONE_NEWTIME (0x80) is missing from clone's list on purpose: in clone(2) that bit belongs to
// the exit-signal byte (CSIGNAL), so a new time namespace can only come from unshare or clone3.
constexpr NsFlag kCloneNs[] = {{CLONE_NEWUSER, "CLONE_NEWUSER"}, {CLONE_NEWNS, "CLONE_NEWNS"},
                               {CLONE_NEWNET, "CLONE_NEWNET"},   {CLONE_NEWPID, "CLONE_NEWPID"},
                               {CLONE_NEWIPC, "CLONE_NEWIPC"},   {CLONE_NEWUTS, "CLONE_NEWUTS"},
                               {CLONE_NEWCGROUP, "CLONE_NEWCGROUP"}};
constexpr uint64_t kCloneNewTime = 0x00000080;  // glibc 2.36's <sched.h> lacks CLONE_NEWTIME

std::vector<std::vector<scmp_arg_cmp>> any_ns_flag(bool with_time) {
  std::vector<std::vector<scmp_arg_cmp>> out;
  for (const auto& f : kCloneNs) out.push_back({SCMP_A0(SCMP_CMP_MASKED_EQ, f.flag, f.flag)});
  if (with_time) out.push_back({SCMP_A0(SCMP_CMP_MASKED_EQ, kCloneNewTime, kCloneNewTime)});
  return out;
}

std::string ns_flag_names(bool with_time) {
  std::string s;
  for (const auto& f : kCloneNs) s += std::string(s.empty() ? "" : ", ") + f.name;
  if (with_time) s += ", CLONE_NEWTIME";
  return s;
}

// setreuid(r, e) and friends: any of the first n arguments is 0 (root). -1 ("unchanged") is not.
std::vector<std::vector<scmp_arg_cmp>> any_arg_zero(unsigned n) {
  std::vector<std::vector<scmp_arg_cmp>> out;
  for (unsigned i = 0; i < n; ++i) out.push_back({scmp_arg_cmp{i, SCMP_CMP_MASKED_EQ, kLow32, 0}});
  return out;
}

// personality(v) is denied unless v is 0 or 0xffffffff. libseccomp 2.5 takes one comparison per
// argument in a rule, so "v != 0 and v != 0xffffffff" becomes a union of single comparisons:
// anything above 32 bits (the kernel reads an unsigned int and glibc truncates to one, so only a
// raw caller lands there: denying it is stricter, never looser), plus, for the low 32 bits, "some
// bit is 1 and the next bit (cyclically) is 0", which holds exactly when the bits are neither all
// 0 nor all 1.
std::vector<std::vector<scmp_arg_cmp>> persona_not_default_or_query() {
  std::vector<std::vector<scmp_arg_cmp>> out = {{SCMP_A0(SCMP_CMP_GT, kLow32)}};
  for (unsigned i = 0; i < 32; ++i) {
    uint64_t bit = 1ULL << i, next = 1ULL << ((i + 1) % 32);
    out.push_back({SCMP_A0(SCMP_CMP_MASKED_EQ, bit | next, bit)});
  }
  return out;
}

std::vector<Rule> rules(bool allow_memfd_create, bool for_docs) {
  const std::string ptrace_why =
      "reads and writes the memory of other processes of the same user: code injection into the "
      "supervisor or anything else the agent can see";
  const std::string mount_why =
      "changes the mount table: remount read-only filesystems writable, uncover what a mount "
      "hides, or move a tree out of the paths Landlock and the policy are written against";
  const std::string ns_why =
      "a new user namespace grants a full capability set inside it, the door to most kernel "
      "privilege escalations; new mount, network, PID, IPC, UTS, cgroup or time namespaces are "
      "how the sandbox's own namespaces are escaped or confused";
  const std::string module_why = "loads or unloads kernel code";
  const std::string keyring_why =
      "the kernel keyring is not namespaced (keys of the host and other sandboxes are one lookup "
      "away) and has a long history of kernel bugs";
  const std::string uring_why =
      "operations submitted through io_uring are not system calls, so this filter never sees "
      "them (open, connect, ...); also a leading source of kernel exploits";
  const std::string quota_why = "host filesystem administration";
  const std::string handle_why =
      "opens a file by its handle with no path lookup, passing by Landlock and mount confinement "
      "(the 'shocker' container escape); name_to_handle_at makes the handles";

  const std::string chroot_why =
      "the agent has no CAP_SYS_CHROOT, so the kernel refuses it anyway; denied here so that the "
      "attempt (the first step of the classic chroot escape) is logged";
  const std::string root_why =
      "the agent never runs as root and holds no capability, so the kernel refuses it anyway; "
      "denied here so that an attempt to become root is logged";

  std::vector<Rule> r = {
      {"ptrace", "", ptrace_why},
      {"process_vm_readv", "", ptrace_why},
      {"process_vm_writev", "", ptrace_why},
      {"pidfd_getfd", "",
       "copies a file descriptor out of another process: a connection the proxy attributed to "
       "another program, or any other process's files and sockets"},
      {"mount", "", mount_why},
      {"umount2", "", mount_why},
      {"fsopen", "", mount_why},
      {"fsconfig", "", mount_why},
      {"fsmount", "", mount_why},
      {"fspick", "", mount_why},
      {"move_mount", "", mount_why},
      {"open_tree", "", mount_why},
      {"mount_setattr", "", mount_why},
      {"pivot_root", "", mount_why},
      {"setns", "",
       "joins another namespace (the host's network, another process's mounts) through an "
       "inherited or received fd"},
      {"unshare", "flags has any of " + ns_flag_names(true), ns_why, EPERM, any_ns_flag(true)},
      {"clone", "flags has any of " + ns_flag_names(false), ns_why, EPERM, any_ns_flag(false)},
      {"clone3", "always, with ENOSYS",
       "its flags sit in a struct in memory that seccomp cannot read, so namespace flags could "
       "not be filtered; ENOSYS (not EPERM) makes glibc fall back to clone, which is filtered",
       ENOSYS},
      {"bpf", "",
       "loads programs into the kernel: a large attack surface, and tracing programs read kernel "
       "and other processes' memory"},
      {"perf_event_open", "",
       "kernel and hardware performance data about other processes (side channels) and a long "
       "history of kernel bugs"},
      {"userfaultfd", "",
       "lets an exploit stall the kernel in the middle of a copy from user memory, the usual "
       "way to win a kernel race"},
      {"kexec_load", "", "replaces the running kernel"},
      {"kexec_file_load", "", "replaces the running kernel"},
      {"init_module", "", module_why},
      {"finit_module", "", module_why},
      {"delete_module", "", module_why},
      {"keyctl", "", keyring_why},
      {"add_key", "", keyring_why},
      {"request_key", "", keyring_why},
      {"io_uring_setup", "", uring_why},
      {"io_uring_enter", "", uring_why},
      {"io_uring_register", "", uring_why},
  };
  if (!allow_memfd_create || for_docs) {
    r.push_back({"memfd_create", "unless SeccompOptions::allow_memfd_create",
                 "an anonymous file has no path, so Landlock's EXECUTE rule cannot stop a binary "
                 "written into one from being run (fexecve): fileless execution"});
  }
  const std::vector<Rule> more = {
      {"reboot", "", "restarts or halts the machine"},
      {"swapon", "", "changes the host's swap"},
      {"swapoff", "", "changes the host's swap"},
      {"acct", "", "turns host-wide process accounting on or off and picks the file it writes"},
      {"quotactl", "", quota_why},
      {"quotactl_fd", "", quota_why},
      {"open_by_handle_at", "", handle_why},
      {"name_to_handle_at", "", handle_why},
      {"lookup_dcookie", "",
       "turns a kernel directory-entry cookie into a path (oprofile): an information leak with "
       "no use today (removed in Linux 6.8)"},
      {"chroot", "", chroot_why},
      {"syslog", "",
       "reads or clears the kernel's log ring, which shows kernel addresses and what the host and "
       "other sandboxes do (allowed to any user where dmesg_restrict is 0)"},
      {"setuid", "uid 0", root_why, EPERM, {{SCMP_A0(SCMP_CMP_MASKED_EQ, kLow32, 0)}}},
      {"setreuid", "either uid 0", root_why, EPERM, any_arg_zero(2)},
      {"setresuid", "any uid 0", root_why, EPERM, any_arg_zero(3)},
      {"setfsuid", "uid 0", root_why, EPERM, {{SCMP_A0(SCMP_CMP_MASKED_EQ, kLow32, 0)}}},
      {"setgid", "gid 0", root_why, EPERM, {{SCMP_A0(SCMP_CMP_MASKED_EQ, kLow32, 0)}}},
      {"setregid", "either gid 0", root_why, EPERM, any_arg_zero(2)},
      {"setresgid", "any gid 0", root_why, EPERM, any_arg_zero(3)},
      {"setfsgid", "gid 0", root_why, EPERM, {{SCMP_A0(SCMP_CMP_MASKED_EQ, kLow32, 0)}}},
      {"personality", "persona other than 0 (PER_LINUX) and 0xffffffff (query)",
       "personas such as ADDR_NO_RANDOMIZE and READ_IMPLIES_EXEC switch off ASLR and NX for "
       "everything the agent runs next; ordinary programs only query or set the default",
       EPERM, persona_not_default_or_query()},
      {"socket", "domain AF_PACKET",
       "raw link-layer frames: sniff or forge traffic beneath the connection-level network policy",
       EPERM, {{SCMP_A0(SCMP_CMP_MASKED_EQ, kLow32, AF_PACKET)}}},
      {"socket", "type SOCK_RAW (type & 0xf, so SOCK_CLOEXEC or SOCK_NONBLOCK cannot hide it), any domain but AF_NETLINK",
       "hand-built IP packets: spoofing, scanning, and protocols the network policy does not see. "
       "Netlink is left to the next rule: its sockets are SOCK_RAW by convention (glibc's "
       "getaddrinfo opens one) and carry no packets",
       EPERM,
       // domain: a 64-bit "not AF_NETLINK" also denies AF_NETLINK with garbage above it.
       {{SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_RAW), SCMP_A0(SCMP_CMP_NE, AF_NETLINK)}}},
      {"socket", "domain AF_NETLINK, protocol other than NETLINK_ROUTE (0)",
       "audit, netfilter, uevent, xfrm and the other netlink families configure or watch the "
       "kernel; NETLINK_ROUTE stays because getaddrinfo and `ip addr` need it",
       EPERM,
       // protocol: a 64-bit "not 0" also denies 0 with garbage above it; stricter, never looser.
       {{SCMP_A0(SCMP_CMP_MASKED_EQ, kLow32, AF_NETLINK), SCMP_A2(SCMP_CMP_NE, NETLINK_ROUTE)}}},
  };
  r.insert(r.end(), more.begin(), more.end());
  return r;
}

struct CtxRelease {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxRelease>;

// libseccomp returns -errno.
void check(int rc, const std::string& step) {
  if (rc < 0) throw Error(Code::kInternal, errno_text("seccomp: " + step, -rc));
}

}  // namespace

Fd seccomp_apply(const SeccompOptions& opts) {
  Ctx ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) throw Error(Code::kInternal, "seccomp: seccomp_init failed (out of memory?)");
  // The filter is for the native ABI only; a system call through another ABI (i386 int 0x80,
  // x32) is not matched by its numbers, so it kills the process instead of being allowed.
  check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS),
        "seccomp_attr_set(ACT_BADARCH)");
  // Report the kernel's errno when loading fails, not libseccomp's generic ECANCELED.
  check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_API_SYSRAWRC, 1), "seccomp_attr_set(API_SYSRAWRC)");

  for (const auto& rule : rules(opts.allow_memfd_create, false)) {
    int nr = seccomp_syscall_resolve_name(rule.syscall.c_str());
    if (nr == __NR_SCMP_ERROR) {
      throw Error(Code::kInternal, "seccomp: libseccomp does not know the system call " + rule.syscall);
    }
    std::string step = "seccomp_rule_add(" + rule.syscall +
                       (rule.condition.empty() ? "" : ", " + rule.condition) + ")";
    // The listener answers with the same errno (SeccompListener::answer_one).
    const uint32_t action = opts.notify ? SCMP_ACT_NOTIFY : SCMP_ACT_ERRNO(rule.err);
    if (rule.when.empty()) {
      check(seccomp_rule_add_array(ctx.get(), action, nr, 0, nullptr), step);
      continue;
    }
    for (const auto& cmps : rule.when) {
      check(seccomp_rule_add_array(ctx.get(), action, nr, static_cast<unsigned>(cmps.size()), cmps.data()), step);
    }
  }
  check(seccomp_load(ctx.get()), "seccomp_load");
  if (!opts.notify) return Fd();
  int fd = seccomp_notify_fd(ctx.get());  // close-on-exec; libseccomp does not close it on release
  if (fd < 0) throw Error(Code::kInternal, errno_text("seccomp: seccomp_notify_fd", -fd));
  return Fd(fd);
}

std::string SeccompDenial::to_string() const {
  return "seccomp " + syscall + " by pid " + std::to_string(pid) + " (" + (err == ENOSYS ? "ENOSYS" : "EPERM") + ")";
}

SeccompListener::SeccompListener(Fd fd) : fd_(std::move(fd)) {
  check(seccomp_notify_alloc(&req_, &resp_), "seccomp_notify_alloc");
}

SeccompListener::~SeccompListener() { seccomp_notify_free(req_, resp_); }

namespace {

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

const char* family_name(uint64_t d) {
  switch (d & kLow32) {
    case AF_INET: return "AF_INET";
    case AF_INET6: return "AF_INET6";
    case AF_NETLINK: return "AF_NETLINK";
    case AF_PACKET: return "AF_PACKET";
    case AF_UNIX: return "AF_UNIX";
    default: return nullptr;
  }
}

// clone3's flags live in the caller's memory. Read only to decide whether to log: the answer is
// ENOSYS whatever they are, so a racing writer changes nothing but the log line.
std::optional<uint64_t> clone3_flags(pid_t pid, uint64_t args) {
  uint64_t flags = 0;
  iovec local{&flags, sizeof flags}, remote{reinterpret_cast<void*>(args), sizeof flags};
  if (::process_vm_readv(pid, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(sizeof flags)) return std::nullopt;
  return flags;
}

constexpr uint64_t kAnyNsFlag = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC |
                                CLONE_NEWUTS | CLONE_NEWCGROUP | 0x80 /* CLONE_NEWTIME */;

}  // namespace

std::optional<SeccompDenial> SeccompListener::answer_one() {
  // The kernel wants a zeroed buffer.
  std::memset(req_, 0, sizeof(*req_));
  // libseccomp 2.5 turns every ioctl failure into -ECANCELED; the ioctl's own errno says why.
  if (seccomp_notify_receive(fd_.get(), req_) < 0) {
    int e = errno;
    if (e == ENOENT || e == EINTR) return std::nullopt;  // the caller died or was interrupted
    throw Error(Code::kInternal, errno_text("seccomp: receive a notification", e));
  }
  const auto& d = req_->data;
  SeccompDenial out;
  out.pid = static_cast<pid_t>(req_->pid);
  out.err = d.nr == SYS_clone3 ? ENOSYS : EPERM;
  bool log = true;
  if (char* name = seccomp_syscall_resolve_num_arch(d.arch, d.nr)) {
    out.syscall = name;
    std::free(name);
  } else {
    out.syscall = "syscall " + std::to_string(d.nr);
  }
  if (d.nr == SYS_socket) {
    const char* fam = family_name(d.args[0]);
    out.syscall += std::string("(") + (fam ? fam : std::to_string(d.args[0] & kLow32).c_str()) + ", type " +
                   std::to_string(d.args[1] & kLow32) + ", protocol " + std::to_string(d.args[2] & kLow32) + ")";
  } else if (d.nr == SYS_clone || d.nr == SYS_unshare) {
    out.syscall += "(flags " + hex(d.args[0]) + ")";
  } else if (d.nr == SYS_clone3) {
    auto flags = clone3_flags(out.pid, d.args[0]);
    log = flags && (*flags & kAnyNsFlag);
    if (flags) out.syscall += "(flags " + hex(*flags) + ")";
  } else if (d.nr == SYS_personality) {
    out.syscall += "(" + hex(d.args[0]) + ")";
  } else if (d.nr == SYS_setuid || d.nr == SYS_setgid || d.nr == SYS_setreuid || d.nr == SYS_setregid ||
             d.nr == SYS_setresuid || d.nr == SYS_setresgid || d.nr == SYS_setfsuid || d.nr == SYS_setfsgid) {
    out.syscall += " to root";
  }
  resp_->id = req_->id;
  resp_->val = 0;
  resp_->error = -out.err;
  resp_->flags = 0;
  if (seccomp_notify_respond(fd_.get(), resp_) < 0) {
    int e = errno;
    if (e != ENOENT && e != EINTR) throw Error(Code::kInternal, errno_text("seccomp: answer a notification", e));
    return std::nullopt;  // the caller is gone (killed, or its call interrupted): nothing was denied to it
  }
  if (!log) return std::nullopt;
  return out;
}

namespace {
// One byte of payload (a message must carry some) and room for one descriptor.
struct FdMessage {
  char byte = 'f';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  FdMessage() {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
  }
  FdMessage(const FdMessage&) = delete;
  FdMessage& operator=(const FdMessage&) = delete;
};
}  // namespace

void send_fd(int sock, int fd) {
  FdMessage m;
  cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  ssize_t n;
  do {
    n = ::sendmsg(sock, &m.msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != 1) throw Error(Code::kInternal, errno_text("send a file descriptor", errno));
}

Fd receive_fd(int sock) {
  FdMessage m;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &m.msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) throw Error(Code::kInternal, errno_text("receive a file descriptor", errno));
  cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  if (n != 1 || !c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int))) {
    throw Error(Code::kInternal, "receive a file descriptor: the peer closed without sending one");
  }
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return Fd(fd);
}

std::vector<std::pair<std::string, std::string>> seccomp_rules_doc() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& rule : rules(false, true)) {
    std::string what = rule.syscall;
    if (!rule.condition.empty()) what += ": " + rule.condition;
    std::string why = rule.reason;
    if (rule.err != EPERM && rule.err != ENOSYS) why += " (errno " + std::to_string(rule.err) + ")";
    out.emplace_back(what, why);
  }
  out.emplace_back("any system call through a non-native ABI (i386 int 0x80, x32)",
                   "kills the process (SIGSYS): the rules match x86_64 numbers only, and i386 "
                   "passes socket calls through socketcall with arguments in memory that no "
                   "filter can read, so the other ABIs are shut rather than filtered");
  return out;
}

}  // namespace bulwark::supervisor
