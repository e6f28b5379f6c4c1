// The seccomp filter loaded for real in a forked child: each denied call must fail with the exact
// errno the filter sets, and its allowed twin must still work.
#include "supervisor/seccomp.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <poll.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <thread>

#include "supervisor/child_probe_test.h"

using namespace bulwark::supervisor;
using bulwark::supervisor::testing::errno_name;
using bulwark::supervisor::testing::Probe;
using bulwark::supervisor::testing::run_in_child;

extern char** environ;

namespace {

struct Call {
  const char* name;
  long (*fn)();
};

// Every unconditionally denied call, with arguments that make the kernel fail it harmlessly
// (bad fd, NULL pointer, bad flags) when no filter is there: the control run below proves
// that EPERM comes from the filter and not from the kernel's own checks.
const Call kDenied[] = {
    {"ptrace", [] { return ::syscall(SYS_ptrace, PTRACE_PEEKDATA, 0, 0, 0); }},
    {"process_vm_readv", [] { return ::syscall(SYS_process_vm_readv, ::getpid(), nullptr, 0, nullptr, 0, 1); }},
    {"process_vm_writev", [] { return ::syscall(SYS_process_vm_writev, ::getpid(), nullptr, 0, nullptr, 0, 1); }},
    {"pidfd_getfd", [] { return ::syscall(SYS_pidfd_getfd, -1, 0, 0); }},
    {"mount", [] { return ::syscall(SYS_mount, nullptr, nullptr, nullptr, 0, nullptr); }},
    {"umount2", [] { return ::syscall(SYS_umount2, nullptr, 0); }},
    {"fsopen", [] { return ::syscall(SYS_fsopen, nullptr, 0); }},
    {"fsconfig", [] { return ::syscall(SYS_fsconfig, -1, 0, nullptr, nullptr, 0); }},
    {"fsmount", [] { return ::syscall(SYS_fsmount, -1, 0, 0); }},
    {"fspick", [] { return ::syscall(SYS_fspick, -1, nullptr, 0); }},
    {"move_mount", [] { return ::syscall(SYS_move_mount, -1, nullptr, -1, nullptr, 0); }},
    {"open_tree", [] { return ::syscall(SYS_open_tree, -1, nullptr, 0); }},
    {"mount_setattr", [] { return ::syscall(SYS_mount_setattr, -1, nullptr, 0, nullptr, 0); }},
    {"pivot_root", [] { return ::syscall(SYS_pivot_root, nullptr, nullptr); }},
    {"setns", [] { return ::syscall(SYS_setns, -1, 0); }},
    {"bpf", [] { return ::syscall(SYS_bpf, -1, nullptr, 0); }},
    {"perf_event_open", [] { return ::syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0); }},
    {"userfaultfd", [] { return ::syscall(SYS_userfaultfd, ~0); }},
    {"kexec_load", [] { return ::syscall(SYS_kexec_load, 0, 0, nullptr, ~0UL); }},
    {"kexec_file_load", [] { return ::syscall(SYS_kexec_file_load, -1, -1, 0, nullptr, ~0UL); }},
    {"init_module", [] { return ::syscall(SYS_init_module, nullptr, 0, nullptr); }},
    {"finit_module", [] { return ::syscall(SYS_finit_module, -1, nullptr, ~0); }},
    {"delete_module", [] { return ::syscall(SYS_delete_module, nullptr, 0); }},
    {"keyctl", [] { return ::syscall(SYS_keyctl, -1, 0, 0, 0, 0); }},
    {"add_key", [] { return ::syscall(SYS_add_key, nullptr, nullptr, nullptr, 0, 0); }},
    {"request_key", [] { return ::syscall(SYS_request_key, nullptr, nullptr, nullptr, 0); }},
    {"io_uring_setup", [] { return ::syscall(SYS_io_uring_setup, 0, nullptr); }},
    {"io_uring_enter", [] { return ::syscall(SYS_io_uring_enter, -1, 0, 0, 0, nullptr, 0); }},
    {"io_uring_register", [] { return ::syscall(SYS_io_uring_register, -1, 0, nullptr, 0); }},
    {"memfd_create", [] { return ::syscall(SYS_memfd_create, nullptr, 0); }},
    {"reboot", [] { return ::syscall(SYS_reboot, 0, 0, 0, nullptr); }},  // bad magic
    {"swapon", [] { return ::syscall(SYS_swapon, nullptr, 0); }},
    {"swapoff", [] { return ::syscall(SYS_swapoff, nullptr); }},
    {"acct", [] { return ::syscall(SYS_acct, reinterpret_cast<const char*>(1)); }},  // not NULL: that switches accounting off
    {"quotactl", [] { return ::syscall(SYS_quotactl, 0, nullptr, 0, nullptr); }},
    {"quotactl_fd", [] { return ::syscall(SYS_quotactl_fd, -1, 0, 0, nullptr); }},
    {"open_by_handle_at", [] { return ::syscall(SYS_open_by_handle_at, -1, nullptr, 0); }},
    {"name_to_handle_at", [] { return ::syscall(SYS_name_to_handle_at, -1, nullptr, nullptr, nullptr, 0); }},
    {"lookup_dcookie", [] { return ::syscall(SYS_lookup_dcookie, 0, nullptr, 0); }},
    {"chroot", [] { return ::syscall(SYS_chroot, nullptr); }},
    {"syslog", [] { return ::syscall(SYS_syslog, 2 /*READ*/, nullptr, -1); }},
};

// A clone(2) with namespace flags, made raw so glibc adds nothing. Should the filter let one
// through, the new child exits at once and the parent reaps it.
long raw_clone(unsigned long flags) {
  long rc = ::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, 0);
  if (rc == 0) ::_exit(0);
  if (rc > 0) ::waitpid(static_cast<pid_t>(rc), nullptr, 0);
  return rc;
}

constexpr unsigned long kCloneNewTime = 0x80;  // glibc 2.36 lacks CLONE_NEWTIME

struct Flag {
  const char* name;
  unsigned long flag;
};
const Flag kNsFlags[] = {{"CLONE_NEWUSER", CLONE_NEWUSER}, {"CLONE_NEWNS", CLONE_NEWNS},
                         {"CLONE_NEWNET", CLONE_NEWNET},   {"CLONE_NEWPID", CLONE_NEWPID},
                         {"CLONE_NEWIPC", CLONE_NEWIPC},   {"CLONE_NEWUTS", CLONE_NEWUTS},
                         {"CLONE_NEWCGROUP", CLONE_NEWCGROUP}};

// struct clone_args, version 0 (64 bytes); glibc 2.36 does not declare it.
struct CloneArgs {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

}  // namespace

TEST_CASE("seccomp: each always-denied call fails with EPERM, and only because of the filter") {
  auto out = run_in_child([](Probe& p) {
    // Control: without the filter none of these answer EPERM (running as root).
    for (const auto& c : kDenied) {
      errno = 0;
      long rc = c.fn();
      int e = errno;
      if (rc != -1 || e == EPERM) {
        p.fail(std::string("control ") + c.name + ": want a non-EPERM failure, got " +
               std::to_string(rc) + "/" + errno_name(e));
      }
    }
    seccomp_apply({});
    for (const auto& c : kDenied) p.denied(c.name, c.fn, EPERM);
  });
  CHECK_MESSAGE(out.ok(), out.describe());
}

TEST_CASE("seccomp: namespaces cannot be made by clone or unshare; ordinary processes and threads still can") {
  auto out = run_in_child([](Probe& p) {
    seccomp_apply({});
    for (const auto& f : kNsFlags) {
      p.denied(std::string("clone(") + f.name + ")", [&] { return raw_clone(f.flag); }, EPERM);
      p.denied(std::string("unshare(") + f.name + ")", [&] { return ::syscall(SYS_unshare, f.flag); }, EPERM);
    }
    p.denied("unshare(CLONE_NEWTIME)", [] { return ::syscall(SYS_unshare, kCloneNewTime); }, EPERM);
    p.denied("unshare(CLONE_NEWNET | CLONE_FILES)", [] { return ::syscall(SYS_unshare, CLONE_NEWNET | CLONE_FILES); }, EPERM);
    // Bits above 32 must not hide a flag the kernel still reads.
    p.denied("unshare(CLONE_NEWUSER | 1<<40)", [] { return ::syscall(SYS_unshare, CLONE_NEWUSER | (1UL << 40)); }, EPERM);

    p.allowed("unshare(CLONE_FILES)", [] { return ::syscall(SYS_unshare, CLONE_FILES); });
    p.allowed("raw clone(SIGCHLD)", [] { return raw_clone(0); });
    pid_t kid = ::fork();  // glibc: clone with CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID
    if (kid == 0) ::_exit(7);
    int st = 0;
    p.check("fork() child exits 7", kid > 0 && ::waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 7);
    // glibc tries clone3 for threads and posix_spawn, gets ENOSYS and falls back to clone.
    bool ran = false;
    std::thread([&] { ran = true; }).join();
    p.check("std::thread runs", ran);
    pid_t sp = 0;
    char* argv[] = {const_cast<char*>("true"), nullptr};
    int rc = ::posix_spawnp(&sp, "true", nullptr, nullptr, argv, environ);
    p.check("posix_spawnp(true) starts: " + errno_name(rc), rc == 0);
    p.check("true exits 0", rc == 0 && ::waitpid(sp, &st, 0) == sp && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  });
  CHECK_MESSAGE(out.ok(), out.describe());
}

TEST_CASE("seccomp: clone3 answers ENOSYS, with or without namespace flags") {
  auto out = run_in_child([](Probe& p) {
    seccomp_apply({});
    CloneArgs plain{};
    plain.exit_signal = SIGCHLD;
    CloneArgs ns = plain;
    ns.flags = CLONE_NEWUSER | CLONE_NEWNS;
    auto clone3 = [](CloneArgs* a) {
      long rc = ::syscall(SYS_clone3, a, sizeof(CloneArgs));
      if (rc == 0) ::_exit(0);
      if (rc > 0) ::waitpid(static_cast<pid_t>(rc), nullptr, 0);
      return rc;
    };
    p.denied("clone3(plain)", [&] { return clone3(&plain); }, ENOSYS);
    p.denied("clone3(CLONE_NEWUSER|CLONE_NEWNS)", [&] { return clone3(&ns); }, ENOSYS);
  });
  CHECK_MESSAGE(out.ok(), out.describe());
}

TEST_CASE("seccomp: with a listener, denied calls get the same errno and each attempt is reported") {
  auto out = run_in_child([](Probe& p) {
    int sv[2];
    p.check("socketpair", ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    pid_t c = ::fork();
    if (c == 0) {  // the agent's side, as in contain.cpp: load, hand the listener over, then act
      ::close(sv[0]);
      int bad = 0;
      try {
        bulwark::Fd l = seccomp_apply({.notify = true});
        send_fd(sv[1], l.get());
      } catch (...) {
        ::_exit(99);
      }
      errno = 0;
      if (::syscall(SYS_ptrace, PTRACE_PEEKDATA, 0, 0, 0) != -1 || errno != EPERM) bad |= 1;
      errno = 0;
      if (::setuid(0) != -1 || errno != EPERM) bad |= 2;  // root here: only the filter refuses
      CloneArgs ns{};
      ns.flags = CLONE_NEWUSER;
      ns.exit_signal = SIGCHLD;
      errno = 0;
      if (::syscall(SYS_clone3, &ns, sizeof ns) != -1 || errno != ENOSYS) bad |= 4;
      std::thread t([] {});  // clone3 without namespace flags: answered ENOSYS, glibc falls back
      t.join();
      if (::setuid(65534) != 0) bad |= 8;  // to any uid but root: allowed
      ::_exit(bad);
    }
    ::close(sv[1]);
    SeccompListener listener(receive_fd(sv[0]));
    std::string seen;
    int reported = 0;
    for (;;) {
      pollfd f{listener.fd(), POLLIN, 0};
      if (::poll(&f, 1, 100) > 0 && (f.revents & POLLIN)) {
        if (auto d = listener.answer_one()) {
          seen += d->to_string() + "\n";
          ++reported;
        }
        continue;
      }
      int st = 0;
      if (::waitpid(c, &st, WNOHANG) == c) {
        p.check("the agent's calls got the listener's errnos (bits " + std::to_string(WEXITSTATUS(st)) + ")",
                WIFEXITED(st) && WEXITSTATUS(st) == 0);
        break;
      }
    }
    p.check("ptrace reported: " + seen, seen.find("seccomp ptrace by pid") != std::string::npos);
    p.check("setuid(0) reported: " + seen, seen.find("seccomp setuid to root") != std::string::npos);
    p.check("clone3 with CLONE_NEWUSER reported: " + seen, seen.find("seccomp clone3(flags 0x10000000)") != std::string::npos);
    p.check("nothing else reported (thread creation is routine): " + seen, reported == 3);
  });
  CHECK_MESSAGE(out.ok(), out.describe());
}

TEST_CASE("seccomp: packet, raw and non-route netlink sockets are denied; TCP, UDP, unix and NETLINK_ROUTE work") {
  auto out = run_in_child([](Probe& p) {
    seccomp_apply({});
    auto sock = [](long domain, long type, long proto) { return ::syscall(SYS_socket, domain, type, proto); };
    p.denied("socket(AF_PACKET, SOCK_DGRAM)", [&] { return sock(AF_PACKET, SOCK_DGRAM, 0); }, EPERM);
    p.denied("socket(AF_PACKET, SOCK_RAW)", [&] { return sock(AF_PACKET, SOCK_RAW, 0); }, EPERM);
    p.denied("socket(AF_INET, SOCK_RAW, ICMP)", [&] { return sock(AF_INET, SOCK_RAW, 1); }, EPERM);
    p.denied("socket(AF_INET6, SOCK_RAW|SOCK_CLOEXEC|SOCK_NONBLOCK, ICMPV6)", [&] { return sock(AF_INET6, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 58); }, EPERM);
    p.denied("socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT)", [&] { return sock(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT); }, EPERM);
    p.denied("socket(AF_NETLINK, SOCK_DGRAM, NETLINK_NETFILTER)", [&] { return sock(AF_NETLINK, SOCK_DGRAM, NETLINK_NETFILTER); }, EPERM);
    p.denied("socket(AF_NETLINK, SOCK_RAW, NETLINK_KOBJECT_UEVENT)", [&] { return sock(AF_NETLINK, SOCK_RAW, NETLINK_KOBJECT_UEVENT); }, EPERM);
    // The kernel reads int arguments from the low 32 bits; garbage above must not hide them.
    p.denied("socket(AF_PACKET | 1<<32, SOCK_DGRAM)", [&] { return sock((1L << 32) | AF_PACKET, SOCK_DGRAM, 0); }, EPERM);
    p.denied("socket(AF_INET, SOCK_RAW | 1<<32)", [&] { return sock(AF_INET, (1L << 32) | SOCK_RAW, 1); }, EPERM);
    p.denied("socket(AF_NETLINK | 1<<32, SOCK_RAW, NETLINK_AUDIT)", [&] { return sock((1L << 32) | AF_NETLINK, SOCK_RAW, NETLINK_AUDIT); }, EPERM);

    struct Ok {
      const char* what;
      long d, t, pr;
    };
    for (const Ok& o : {Ok{"AF_INET SOCK_STREAM", AF_INET, SOCK_STREAM, 0},
                        Ok{"AF_INET6 SOCK_STREAM|SOCK_CLOEXEC", AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0},
                        Ok{"AF_INET SOCK_DGRAM", AF_INET, SOCK_DGRAM, 0},
                        Ok{"AF_UNIX SOCK_STREAM", AF_UNIX, SOCK_STREAM, 0},
                        // glibc (getaddrinfo, getifaddrs) and iproute2 open route sockets as SOCK_RAW.
                        Ok{"AF_NETLINK SOCK_RAW|SOCK_CLOEXEC NETLINK_ROUTE", AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE},
                        Ok{"AF_NETLINK SOCK_DGRAM NETLINK_ROUTE", AF_NETLINK, SOCK_DGRAM, NETLINK_ROUTE}}) {
      long fd = p.allowed(std::string("socket(") + o.what + ")", [&] { return sock(o.d, o.t, o.pr); });
      if (fd >= 0) ::close(static_cast<int>(fd));
    }
  });
  CHECK_MESSAGE(out.ok(), out.describe());
}

TEST_CASE("seccomp: personality may be queried or set to the default, nothing else") {
  auto out = run_in_child([](Probe& p) {
    seccomp_apply({});
    p.allowed("personality(0xffffffff) query", [] { return ::syscall(SYS_personality, 0xffffffffUL); });
    p.allowed("personality(PER_LINUX)", [] { return ::syscall(SYS_personality, PER_LINUX); });
    p.denied("personality(ADDR_NO_RANDOMIZE)", [] { return ::syscall(SYS_personality, ADDR_NO_RANDOMIZE); }, EPERM);
    p.denied("personality(READ_IMPLIES_EXEC)", [] { return ::syscall(SYS_personality, READ_IMPLIES_EXEC); }, EPERM);
    p.denied("personality(PER_LINUX | 1<<32)", [] { return ::syscall(SYS_personality, 1UL << 32); }, EPERM);
    p.check("persona unchanged", ::syscall(SYS_personality, 0xffffffffUL) == PER_LINUX);
  });
  CHECK_MESSAGE(out.ok(), out.describe());
}

TEST_CASE("seccomp: memfd_create is denied unless allowed") {
  auto out = run_in_child([](Probe& p) {
    seccomp_apply({});
    p.denied("memfd_create", [] { return ::syscall(SYS_memfd_create, "x", MFD_CLOEXEC); }, EPERM);
  });
  CHECK_MESSAGE(out.ok(), out.describe());
  out = run_in_child([](Probe& p) {
    seccomp_apply({.allow_memfd_create = true});
    long fd = p.allowed("memfd_create", [] { return ::syscall(SYS_memfd_create, "x", MFD_CLOEXEC); });
    if (fd >= 0) ::close(static_cast<int>(fd));
    p.denied("ptrace still denied", [] { return ::syscall(SYS_ptrace, PTRACE_PEEKDATA, 0, 0, 0); }, EPERM);
  });
  CHECK_MESSAGE(out.ok(), out.describe());
}

#if defined(__x86_64__)
namespace {
long i386_getpid() {  // int 0x80 with eax = 20: getpid in the i386 table
  long ret;
  asm volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory", "rcx", "r11");
  return ret;
}
constexpr long kX32Bit = 0x40000000L;
}  // namespace

TEST_CASE("seccomp: a system call through the i386 or x32 ABI kills the process") {
  // Control: without the filter the i386 call works (or, on a kernel without IA-32 emulation,
  // faults, and then that ABI is no way around the filter anyway).
  auto control = run_in_child([](Probe& p) { p.check("i386 getpid returns our pid", i386_getpid() == ::getpid()); });
  if (control.ok()) {
    auto out = run_in_child([](Probe& p) {
      seccomp_apply({});
      i386_getpid();
      p.fail("survived an i386 system call");
    });
    CHECK_MESSAGE(out.killed_by(SIGSYS), out.describe());
  } else {
    MESSAGE("i386 ABI unavailable in this kernel (" << control.describe() << "); its filter test is skipped");
  }
  // x32 numbers reach seccomp even where the kernel has no x32 support (then they would end in
  // ENOSYS), so this runs everywhere.
  auto out = run_in_child([](Probe& p) {
    seccomp_apply({});
    ::syscall(kX32Bit | SYS_getpid);
    p.fail("survived an x32 system call");
  });
  CHECK_MESSAGE(out.killed_by(SIGSYS), out.describe());
}
#endif

TEST_CASE("seccomp: docs/seccomp.md lists every rule and its reason") {
  std::ifstream in(std::string(BULWARK_SOURCE_DIR) + "/docs/seccomp.md");
  REQUIRE_MESSAGE(in.good(), "docs/seccomp.md is missing");
  std::string doc{std::istreambuf_iterator<char>(in), {}};
  auto rules = seccomp_rules_doc();
  CHECK(rules.size() >= 45);
  for (const auto& [what, why] : rules) {
    CHECK_MESSAGE(doc.find("| " + what + " |") != std::string::npos, "docs/seccomp.md lacks the rule: " << what);
    CHECK_MESSAGE(doc.find(why) != std::string::npos, "docs/seccomp.md lacks the reason for " << what);
  }
}
