// bulwark-escape-probe: one escape attempt per subcommand, run as the agent inside a real sandbox.
// Statically linked so it runs in any image. Exit 0 and "DENIED name: how" when the attempt was
// refused the way the layer under test refuses it (the exact errno); exit 1 and "ESCAPE ..." when
// it succeeded; exit 2 and "UNEXPECTED ..." for anything else. "ok-*" subcommands are the positive
// twins: exit 0 and "OK name" when the allowed path works.
#include <arpa/inet.h>
#include <dirent.h>
#include <sys/un.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace {

std::string name;  // the running subcommand

[[noreturn]] void denied(const std::string& how) {
  std::printf("DENIED %s: %s\n", name.c_str(), how.c_str());
  std::exit(0);
}
[[noreturn]] void escaped(const std::string& how) {
  std::printf("ESCAPE %s: %s\n", name.c_str(), how.c_str());
  std::exit(1);
}
[[noreturn]] void unexpected(const std::string& how) {
  std::printf("UNEXPECTED %s: %s\n", name.c_str(), how.c_str());
  std::exit(2);
}
[[noreturn]] void ok(const std::string& how = "") {
  std::printf("OK %s%s%s\n", name.c_str(), how.empty() ? "" : ": ", how.c_str());
  std::exit(0);
}

std::string err(int e) { return std::string(strerrorname_np(e) ? strerrorname_np(e) : "?") + " (" + std::strerror(e) + ")"; }

// The common shape: rc < 0 with errno `want` is the expected denial.
void expect_errno(long rc, int want, const std::string& what) {
  int e = errno;
  if (rc >= 0) escaped(what + " succeeded");
  if (e != want) unexpected(what + " failed with " + err(e) + ", expected " + err(want));
  denied(what + ": " + err(e));
}

std::string arg(const std::vector<std::string>& a, size_t i) {
  if (i >= a.size()) unexpected("missing argument " + std::to_string(i + 1));
  return a[i];
}

// The proxy's address from HTTP_PROXY=http://A.B.C.D:PORT.
std::pair<std::string, int> proxy_addr() {
  const char* p = std::getenv("HTTP_PROXY");
  if (!p) unexpected("HTTP_PROXY is not set");
  std::string s = p;
  auto host_start = s.find("//") + 2;
  auto colon = s.rfind(':');
  return {s.substr(host_start, colon - host_start), std::atoi(s.c_str() + colon + 1)};
}

int tcp_connect(const std::string& ip, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) unexpected("socket: " + err(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

// CONNECT target through the sandbox's proxy: the socket and the proxy's answer.
std::pair<int, std::string> proxy_connect(const std::string& target) {
  auto [ip, port] = proxy_addr();
  int fd = tcp_connect(ip, port);
  if (fd < 0) unexpected("cannot reach the proxy: " + err(errno));
  std::string req = "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n";
  (void)!::write(fd, req.data(), req.size());
  char buf[512] = {0};
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  return {fd, n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string()};
}

// A DNS query for example.com over UDP to ip:53; the answer (or its absence) tells.
void udp_dns(const std::string& ip) {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(53);
  if (::inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) unexpected("bad resolver address " + ip);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) expect_errno(-1, ENETUNREACH, "connect UDP " + ip + ":53");
  const unsigned char q[] = {0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1};
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  // The firewall drops it on the way out: the kernel reports that to the sender as EPERM.
  if (::send(fd, q, sizeof q, 0) < 0) expect_errno(-1, EPERM, "send a DNS query to " + ip + ":53");
  char buf[512];
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  if (n > 0) escaped("a DNS answer came back from " + ip);
  expect_errno(n, EHOSTUNREACH, "DNS query to " + ip + ":53 (answer)");
}

// Transparent egress (the default): a direct connection reaches the proxy, which decides it on
// its address (it sends nothing, so no name) and refuses it with a reset.
void expect_transparent_reset(const std::string& ip, int port) {
  std::string what = "connect to " + ip + ":" + std::to_string(port) + " without the proxy";
  int fd = tcp_connect(ip, port);
  if (fd < 0) unexpected(what + " failed with " + err(errno) + "; expected the transparent proxy to take it, then reset it");
  char c;
  ssize_t n = ::read(fd, &c, 1);
  int e = errno;
  ::close(fd);
  if (n > 0) escaped(what + ": data came back");
  if (n == 0) unexpected(what + ": closed without a reset");
  errno = e;
  expect_errno(n, ECONNRESET, what + " (after the proxy's decision)");
}

// A query for example.com (no policy rule names it) to the sandbox's own DNS: NXDOMAIN, no answer.
void dns_nxdomain(const std::string& ip) {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(53);
  if (::inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) unexpected("bad resolver address " + ip);
  const unsigned char q[] = {0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1};
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::send(fd, q, sizeof q, 0) < 0)
    unexpected("cannot query the sandbox's DNS at " + ip + ": " + err(errno));
  unsigned char buf[512];
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  if (n < 12) unexpected("no DNS answer from " + ip + (n < 0 ? ": " + err(errno) : std::string()));
  int rcode = buf[3] & 0x0f, answers = (buf[6] << 8) | buf[7];
  if (answers > 0) escaped("the sandbox's DNS answered example.com with " + std::to_string(answers) + " record(s)");
  if (rcode != 3) unexpected("the sandbox's DNS answered rcode " + std::to_string(rcode) + ", expected NXDOMAIN (3)");
  denied("the sandbox's DNS at " + ip + " answered NXDOMAIN for example.com");
}

// IPv6 to arg 0: the namespace has no IPv6 at all (no address, not even ::1; no route), so no
// IPv6 packet can leave around the IPv4 rules.
void ipv6_connect(const std::string& ip6, int port) {
  if (FILE* f = std::fopen("/proc/net/if_inet6", "r")) {
    char line[256];
    bool any = std::fgets(line, sizeof line, f) != nullptr;
    std::fclose(f);
    if (any) escaped(std::string("the sandbox's network namespace has an IPv6 address: ") + line);
  }
  int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) denied("socket(AF_INET6): " + err(errno));
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET6, ip6.c_str(), &a.sin6_addr) != 1) unexpected("bad IPv6 address " + ip6);
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  int e = errno;
  ::close(fd);
  errno = e;
  // No IPv6 address to send from: the kernel refuses before any route or packet.
  expect_errno(rc, EADDRNOTAVAIL, "connect to [" + ip6 + "]:" + std::to_string(port));
}

std::string first_nameserver() {
  FILE* f = std::fopen("/etc/resolv.conf", "r");
  char line[256];
  while (f && std::fgets(line, sizeof line, f)) {
    char ns[64];
    if (std::sscanf(line, "nameserver %63s", ns) == 1 && std::strchr(ns, ':') == nullptr) {
      std::fclose(f);
      return ns;
    }
  }
  if (f) std::fclose(f);
  return "127.0.0.53";
}

// Walks readable files looking for needle; returns the first file that contains it.
std::string find_in_files(const std::string& dir, const std::string& needle, int depth, int& budget) {
  if (depth > 12 || budget <= 0) return "";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return "";
  std::string found;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    std::string p = (dir == "/" ? "" : dir) + "/" + n;
    if (p == "/proc" || p == "/sys" || p == "/dev") continue;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      found = find_in_files(p, needle, depth + 1, budget);
    } else if (S_ISREG(st.st_mode) && st.st_size < (8 << 20) && --budget > 0) {
      int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      std::string data(static_cast<size_t>(st.st_size), '\0');
      ssize_t r = ::read(fd, data.data(), data.size());
      ::close(fd);
      if (r > 0 && data.find(needle) != std::string::npos) found = p;
    }
    if (!found.empty()) break;
  }
  ::closedir(d);
  return found;
}

using Probe = std::function<void(const std::vector<std::string>&)>;

const std::map<std::string, Probe>& probes() {
  static const std::map<std::string, Probe> m = {
      // ---- filesystem (Landlock)
      {"write-outside", [](const auto&) { expect_errno(::open("/etc/bulwark-escape", O_CREAT | O_WRONLY, 0644), EACCES, "create /etc/bulwark-escape"); }},
      // arg 0: a file the agent's uid owns in a read-only directory, so only Landlock refuses.
      {"write-read-only-file", [](const auto& a) { expect_errno(::open(arg(a, 0).c_str(), O_WRONLY | O_APPEND), EACCES, "open " + arg(a, 0) + " for writing"); }},
      {"read-secret", [](const auto& a) { expect_errno(::open(arg(a, 0).c_str(), O_RDONLY), EACCES, "read " + arg(a, 0)); }},
      {"list-secret-dir", [](const auto& a) {
         std::string dir = arg(a, 0).substr(0, arg(a, 0).rfind('/'));
         expect_errno(::open(dir.c_str(), O_RDONLY | O_DIRECTORY), EACCES, "list " + dir);
       }},
      {"symlink-escape", [](const auto& a) {
         std::string link = arg(a, 1) + "/escape-link";
         ::unlink(link.c_str());
         if (::symlink(arg(a, 0).c_str(), link.c_str()) != 0) unexpected("symlink in the writable dir: " + err(errno));
         expect_errno(::open(link.c_str(), O_RDONLY), EACCES, "read " + arg(a, 0) + " through a symlink in " + arg(a, 1));
       }},
      {"hardlink-escape", [](const auto& a) {
         std::string link = arg(a, 1) + "/escape-hardlink";
         expect_errno(::link(arg(a, 0).c_str(), link.c_str()), EXDEV, "hardlink " + arg(a, 0) + " into " + arg(a, 1));
       }},
      {"dotdot-escape", [](const auto& a) { expect_errno(::open(arg(a, 0).c_str(), O_RDONLY), EACCES, "read " + arg(a, 0)); }},
      {"truncate-read-only", [](const auto& a) { expect_errno(::truncate(arg(a, 0).c_str(), 0), EACCES, "truncate " + arg(a, 0)); }},
      {"write-proc-sys", [](const auto&) {
         int fd = ::open("/proc/sys/kernel/hostname", O_WRONLY);
         if (fd >= 0) escaped("opened /proc/sys/kernel/hostname for writing");
         if (errno != EACCES && errno != EROFS) unexpected("open /proc/sys for writing: " + err(errno));
         denied("open /proc/sys/kernel/hostname for writing: " + err(errno));
       }},
      // ---- process (identity, seccomp)
      {"ptrace-sibling", [](const auto&) {
         pid_t c = ::fork();
         if (c == 0) {
           ::pause();
           ::_exit(0);
         }
         long rc = ::ptrace(PTRACE_ATTACH, c, nullptr, nullptr);
         int e = errno;
         ::kill(c, SIGKILL);
         ::waitpid(c, nullptr, 0);
         errno = e;
         expect_errno(rc, EPERM, "ptrace(ATTACH) a sibling process");
       }},
      {"ptrace-traceme", [](const auto&) { expect_errno(::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr), EPERM, "ptrace(TRACEME)"); }},
      {"process-vm-readv", [](const auto&) {
         char buf[8];
         iovec l{buf, sizeof buf}, r{buf, sizeof buf};
         expect_errno(::syscall(SYS_process_vm_readv, ::getppid(), &l, 1, &r, 1, 0), EPERM, "process_vm_readv");
       }},
      {"mount-tmpfs", [](const auto& a) { expect_errno(::mount("tmpfs", arg(a, 0).c_str(), "tmpfs", 0, nullptr), EPERM, "mount tmpfs on " + arg(a, 0)); }},
      {"unshare-userns", [](const auto&) { expect_errno(::unshare(CLONE_NEWUSER), EPERM, "unshare(CLONE_NEWUSER)"); }},
      {"unshare-netns", [](const auto&) { expect_errno(::unshare(CLONE_NEWNET), EPERM, "unshare(CLONE_NEWNET)"); }},
      {"clone-newuser", [](const auto&) { expect_errno(::syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, nullptr, nullptr, nullptr, 0), EPERM, "clone(CLONE_NEWUSER)"); }},
      {"clone3-newns", [](const auto&) {
         clone_args ca{};
         ca.flags = CLONE_NEWUSER | CLONE_NEWNS;
         ca.exit_signal = SIGCHLD;
         expect_errno(::syscall(SYS_clone3, &ca, sizeof ca), ENOSYS, "clone3(CLONE_NEWUSER|CLONE_NEWNS)");
       }},
      {"setns", [](const auto&) {
         int fd = ::open("/proc/self/ns/net", O_RDONLY);
         if (fd < 0) unexpected("open /proc/self/ns/net: " + err(errno));
         expect_errno(::setns(fd, CLONE_NEWNET), EPERM, "setns");
       }},
      {"chroot", [](const auto&) { expect_errno(::chroot("/tmp"), EPERM, "chroot /tmp"); }},
      {"pivot-root", [](const auto&) { expect_errno(::syscall(SYS_pivot_root, "/tmp", "/tmp"), EPERM, "pivot_root"); }},
      {"setuid-root", [](const auto&) { expect_errno(::setuid(0), EPERM, "setuid(0)"); }},
      {"setuid-binary", [](const auto& a) {
         // A setuid-root copy of this probe: with no_new_privs its setuid bit must not raise us.
         pid_t c = ::fork();
         if (c == 0) {
           ::execl(arg(a, 0).c_str(), arg(a, 0).c_str(), "report-euid", nullptr);
           ::_exit(99);
         }
         int st = 0;
         ::waitpid(c, &st, 0);
         if (!WIFEXITED(st) || WEXITSTATUS(st) == 99) unexpected("could not run " + arg(a, 0));
         if (WEXITSTATUS(st) == 0) escaped("the setuid binary ran as root");
         denied("setuid-root " + arg(a, 0) + " ran with euid " + std::to_string(WEXITSTATUS(st) == 1 ? -1 : 0) + "!=0 (no_new_privs)");
       }},
      {"report-euid", [](const auto&) { std::exit(::geteuid() == 0 ? 0 : 1); }},
      {"capabilities", [](const auto&) {
         FILE* f = std::fopen("/proc/self/status", "r");
         char line[256];
         std::string bad;
         while (f && std::fgets(line, sizeof line, f)) {
           unsigned long long v;
           char key[16];
           if (std::sscanf(line, "%15[^:]:\t%llx", key, &v) == 2 &&
               (std::string(key) == "CapEff" || std::string(key) == "CapPrm" || std::string(key) == "CapBnd" ||
                std::string(key) == "CapAmb" || std::string(key) == "CapInh") && v != 0)
             bad += std::string(key) + " ";
         }
         if (f) std::fclose(f);
         if (!bad.empty()) escaped("capabilities left: " + bad);
         denied("no capability in the effective, permitted, inheritable, bounding or ambient sets");
       }},
      {"load-module", [](const auto&) { expect_errno(::syscall(SYS_finit_module, 0, "", 0), EPERM, "finit_module"); }},
      {"init-module", [](const auto&) { expect_errno(::syscall(SYS_init_module, nullptr, 0, ""), EPERM, "init_module"); }},
      {"bpf", [](const auto&) {
         bpf_attr attr{};
         expect_errno(::syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr), EPERM, "bpf(BPF_PROG_LOAD)");
       }},
      {"perf-event-open", [](const auto&) {
         perf_event_attr attr{};
         attr.size = sizeof attr;
         attr.type = PERF_TYPE_SOFTWARE;
         attr.config = PERF_COUNT_SW_CPU_CLOCK;
         expect_errno(::syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0), EPERM, "perf_event_open");
       }},
      {"keyctl", [](const auto&) { expect_errno(::syscall(SYS_keyctl, 0 /*KEYCTL_GET_KEYRING_ID*/, -3, 0), EPERM, "keyctl"); }},
      {"add-key", [](const auto&) { expect_errno(::syscall(SYS_add_key, "user", "k", "v", 1, -3), EPERM, "add_key"); }},
      {"io-uring", [](const auto&) {
         io_uring_params p{};
         expect_errno(::syscall(SYS_io_uring_setup, 4, &p), EPERM, "io_uring_setup");
       }},
      {"userfaultfd", [](const auto&) { expect_errno(::syscall(SYS_userfaultfd, 0), EPERM, "userfaultfd"); }},
      {"memfd-create", [](const auto&) { expect_errno(::syscall(SYS_memfd_create, "x", 0), EPERM, "memfd_create"); }},
      {"open-by-handle", [](const auto&) { expect_errno(::syscall(SYS_open_by_handle_at, AT_FDCWD, nullptr, 0), EPERM, "open_by_handle_at"); }},
      {"kexec", [](const auto&) { expect_errno(::syscall(SYS_kexec_load, 0, 0, nullptr, 0), EPERM, "kexec_load"); }},
      {"reboot", [](const auto&) { expect_errno(::syscall(SYS_reboot, 0xfee1dead, 672274793, 0x1234567, nullptr), EPERM, "reboot"); }},
      {"personality", [](const auto&) { expect_errno(::personality(READ_IMPLIES_EXEC), EPERM, "personality(READ_IMPLIES_EXEC)"); }},
      {"fork-bomb", [](const auto&) {
         std::vector<pid_t> kids;
         for (int i = 0; i < 100000; ++i) {
           pid_t c = ::fork();
           if (c == 0) {
             ::pause();
             ::_exit(0);
           }
           if (c < 0) {
             int e = errno;
             for (pid_t k : kids) ::kill(k, SIGKILL);
             for (pid_t k : kids) ::waitpid(k, nullptr, 0);
             if (e != EAGAIN) unexpected("fork failed with " + err(e));
             denied("fork refused with EAGAIN after " + std::to_string(kids.size()) + " processes");
           }
           kids.push_back(c);
         }
         for (pid_t k : kids) ::kill(k, SIGKILL);
         escaped("100000 processes forked");
       }},
      {"kill-supervisor", [](const auto& a) {
         // The supervisor lives outside our PID namespace: its pid means nothing here (or names
         // one of ours). Every pid we can see except ourselves is ours or init, who ignores us.
         long pid = std::atol(arg(a, 0).c_str());
         for (int sig : {SIGKILL, SIGTERM}) {
           if (::kill(static_cast<pid_t>(pid), sig) == 0 && pid != 1) escaped("signalled pid " + std::to_string(pid));
         }
         ::kill(1, SIGKILL);  // our own init: the kernel ignores it from inside the namespace
         ::usleep(200000);
         denied("pid " + std::to_string(pid) + " not reachable; init ignored SIGKILL; still running");
       }},
      {"proc-environ", [](const auto&) {
         // Any process's environment but ours (the supervisor's is not even visible).
         DIR* d = ::opendir("/proc");
         std::string readable;
         while (dirent* e = d ? ::readdir(d) : nullptr) {
           pid_t p = std::atoi(e->d_name);
           if (p <= 0 || p == ::getpid()) continue;
           int fd = ::open(("/proc/" + std::to_string(p) + "/environ").c_str(), O_RDONLY);
           if (fd >= 0) {
             char c;
             if (::read(fd, &c, 1) > 0) readable += std::to_string(p) + " ";
             ::close(fd);
           }
         }
         if (d) ::closedir(d);
         if (!readable.empty()) escaped("read the environment of pid(s) " + readable);
         denied("no other process's /proc/<pid>/environ is readable");
       }},
      {"find-credential", [](const auto& a) {
         int budget = 20000;
         std::string where = find_in_files("/", arg(a, 0), 0, budget);
         if (!where.empty()) escaped("the credential is in " + where);
         denied("the credential is in no readable file");
       }},
      // ---- network
      {"raw-socket", [](const auto&) { expect_errno(::socket(AF_INET, SOCK_RAW, IPPROTO_ICMP), EPERM, "socket(AF_INET, SOCK_RAW)"); }},
      {"packet-socket", [](const auto&) { expect_errno(::socket(AF_PACKET, SOCK_RAW, 0), EPERM, "socket(AF_PACKET)"); }},
      {"netlink-socket", [](const auto&) { expect_errno(::socket(AF_NETLINK, SOCK_DGRAM, NETLINK_NETFILTER), EPERM, "socket(AF_NETLINK, NETLINK_NETFILTER)"); }},
      {"direct-connect", [](const auto& a) { expect_transparent_reset(arg(a, 0), std::atoi(arg(a, 1).c_str())); }},
      // --transparent-egress false: the agent's firewall refuses it outright.
      {"direct-connect-refused", [](const auto& a) { expect_errno(tcp_connect(arg(a, 0), std::atoi(arg(a, 1).c_str())), ECONNREFUSED, "connect to " + arg(a, 0) + ":" + arg(a, 1) + " without the proxy"); }},
      {"dns-public", [](const auto&) { udp_dns("8.8.8.8"); }},
      {"dns-host-resolver", [](const auto&) { dns_nxdomain(first_nameserver()); }},
      {"dns-host-resolver-refused", [](const auto&) { udp_dns(first_nameserver()); }},
      {"ipv6-connect", [](const auto& a) { ipv6_connect(arg(a, 0), std::atoi(arg(a, 1).c_str())); }},
      // arg 0: a path-named unix socket with a listener, outside the policy's paths.
      {"unix-socket-outside", [](const auto& a) {
         int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
         if (fd < 0) unexpected("socket(AF_UNIX): " + err(errno));
         sockaddr_un addr{};
         addr.sun_family = AF_UNIX;
         std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", arg(a, 0).c_str());
         int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
         ::close(fd);
         expect_errno(rc, ENOENT, "connect to the unix socket " + arg(a, 0));
       }},
      {"host-loopback", [](const auto& a) { expect_errno(tcp_connect("127.0.0.1", std::atoi(arg(a, 0).c_str())), ECONNREFUSED, "connect to the host's 127.0.0.1:" + arg(a, 0)); }},
      {"supervisor-side-port", [](const auto& a) {
         auto [ip, port] = proxy_addr();
         expect_errno(tcp_connect(ip, std::atoi(arg(a, 0).c_str())), ECONNREFUSED, "connect to the supervisor's side " + ip + ":" + arg(a, 0));
       }},
      {"proxy-denies-host", [](const auto& a) {
         auto [fd, answer] = proxy_connect(arg(a, 0));
         if (answer.rfind("HTTP/1.1 200", 0) == 0) escaped("the proxy opened a tunnel to " + arg(a, 0));
         if (answer.rfind("HTTP/1.1 403", 0) == 0) denied("proxy answered 403 for " + arg(a, 0));
         unexpected("proxy answered: " + answer);
       }},
      {"x32-syscall", [](const auto&) {
         pid_t c = ::fork();
         if (c == 0) {
           ::syscall(0x40000000 | 39 /* x32 getpid */);
           ::_exit(0);
         }
         int st = 0;
         ::waitpid(c, &st, 0);
         if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS) denied("an x32 system call killed the caller (SIGSYS)");
         if (WIFEXITED(st)) escaped("an x32 system call ran");
         unexpected("x32 child ended with status " + std::to_string(st));
       }},
      // ---- positive twins: what the policy allows still works
      // /tmp is the sandbox's own: writable, and a file the host put in its /tmp (arg 0) is not there.
      {"ok-tmp-private", [](const auto& a) {
         int fd = ::open("/tmp/bulwark-twin", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
         if (fd < 0 || ::write(fd, "ok", 2) != 2) unexpected("write /tmp/bulwark-twin: " + err(errno));
         ::close(fd);
         struct stat st {};
         if (::stat(arg(a, 0).c_str(), &st) == 0) unexpected("the host's " + arg(a, 0) + " is visible");
         if (errno != ENOENT) unexpected("stat " + arg(a, 0) + ": " + err(errno));
         ok("/tmp is private and writable");
       }},
      {"ok-write-workdir", [](const auto& a) {
         std::string p = arg(a, 0) + "/ok-file";
         int fd = ::open(p.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
         if (fd < 0 || ::write(fd, "ok", 2) != 2) unexpected("write " + p + ": " + err(errno));
         ::close(fd);
         ok("wrote " + p);
       }},
      {"ok-read-etc", [](const auto&) {
         int fd = ::open("/etc/passwd", O_RDONLY);
         char c;
         if (fd < 0 || ::read(fd, &c, 1) != 1) unexpected("read /etc/passwd: " + err(errno));
         ok();
       }},
      {"ok-fork-thread", [](const auto&) {
         pid_t c = ::fork();
         if (c < 0) unexpected("fork: " + err(errno));
         if (c == 0) ::_exit(0);
         ::waitpid(c, nullptr, 0);
         pthread_t t;
         if (pthread_create(&t, nullptr, [](void*) -> void* { return nullptr; }, nullptr) != 0) unexpected("pthread_create");
         pthread_join(t, nullptr);
         ok("fork and a thread work");
       }},
      {"ok-sockets", [](const auto&) {
         int t = ::socket(AF_INET, SOCK_STREAM, 0), r = ::socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE), u = ::socket(AF_INET, SOCK_DGRAM, 0);
         if (t < 0 || r < 0 || u < 0) unexpected("tcp/udp/netlink-route socket: " + err(errno));
         ok("TCP, UDP and NETLINK_ROUTE sockets open");
       }},
      {"ok-own-loopback", [](const auto&) {
         int l = ::socket(AF_INET, SOCK_STREAM, 0);
         sockaddr_in a{};
         a.sin_family = AF_INET;
         a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
         socklen_t len = sizeof a;
         if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 1) != 0 ||
             ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) != 0)
           unexpected("listen on the sandbox's own loopback: " + err(errno));
         if (tcp_connect("127.0.0.1", ntohs(a.sin_port)) < 0) unexpected("connect to own loopback: " + err(errno));
         ok("the sandbox's own loopback works");
       }},
      {"ok-proxy-allowed", [](const auto& a) {
         auto [fd, answer] = proxy_connect(arg(a, 0));
         if (answer.rfind("HTTP/1.1 200", 0) != 0) unexpected("proxy answered: " + answer);
         (void)!::write(fd, "ping\n", 5);
         char echo[8] = {0};
         if (::read(fd, echo, 5) != 5 || std::strncmp(echo, "ping\n", 5) != 0) unexpected("no echo through the tunnel");
         ok("tunnel to " + arg(a, 0) + " through the proxy works");
       }},
      {"ok-credential-env", [](const auto& a) {
         const char* v = std::getenv(arg(a, 0).c_str());
         if (!v || arg(a, 1) != v) unexpected(arg(a, 0) + " is not in the agent's environment");
         ok(arg(a, 0) + " reached the agent's environment");
       }},
  };
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc < 2 || !probes().count(argv[1])) {
    std::fprintf(stderr, "usage: bulwark-escape-probe NAME [ARGS]; names:");
    for (const auto& [n, p] : probes()) std::fprintf(stderr, " %s", n.c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }
  name = argv[1];
  probes().at(name)(std::vector<std::string>(argv + 2, argv + argc));
  unexpected("the probe did not decide");
}
