// Landlock applied for real in a forked child: each test grants a small tree under /tmp and then
// checks the kernel refuses what was not granted (with the exact errno) and allows what was. The
// tests run as root, so a denial can only come from Landlock, not from file modes.
#include "supervisor/landlock.h"
#include "supervisor/landlock_audit.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "shared/error.h"
#include "supervisor/child_probe_test.h"

using namespace bulwark;
using namespace bulwark::supervisor;
using bulwark::supervisor::testing::Probe;
using bulwark::supervisor::testing::run_in_child;

namespace {

// /tmp/bulwark-landlock-XXXXXX with ro/f ("data"), ro/g, rw/, outside/secret ("secret"), and two
// symlinks planted in rw/: one to outside/secret, one to ro/f.
struct Tree {
  std::string root;
  Tree() {
    char tmpl[] = "/tmp/bulwark-landlock-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    root = tmpl;
    for (const char* d : {"ro", "rw", "outside"}) std::filesystem::create_directory(root + "/" + d);
    write("ro/f", "data");
    write("ro/g", "other");
    write("rw/file", "rw data");
    write("outside/secret", "secret");
    std::filesystem::create_symlink(root + "/outside/secret", root + "/rw/to_secret");
    std::filesystem::create_symlink("../ro/f", root + "/rw/to_ro");
  }
  ~Tree() {
    std::error_code ec;  // cleanup of a test tree: nothing to do if it fails
    std::filesystem::remove_all(root, ec);
  }
  std::string p(const std::string& rel) const { return root + "/" + rel; }
  void write(const std::string& rel, const std::string& text) const {
    std::ofstream(p(rel)) << text;
  }
  std::string read(const std::string& rel) const {
    std::ifstream in(p(rel));
    return {std::istreambuf_iterator<char>(in), {}};
  }
};

// What contain.cpp will do in the agent's child: no_new_privs, then the domain.
void confine(LandlockPlan& plan) {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw Error(Code::kInternal, "prctl");
  landlock_enforce(plan);
}

std::string read_fd(int fd) {
  std::string s;
  char buf[256];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
  return s;
}

// Opens path read-only in the child and returns its contents ("<errno name>" when it cannot).
std::string slurp(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "<" + testing::errno_name(errno) + ">";
  std::string s = read_fd(fd);
  ::close(fd);
  return s;
}

LandlockPlan plan_for(const Tree& t) {
  return landlock_prepare({.read_only = {t.p("ro")}, .read_write = {t.p("rw")}, .hard_requirement = true});
}

}  // namespace

TEST_CASE("landlock: the kernel offers Landlock and the plan uses its ABI") {
  int abi = landlock_abi();
  REQUIRE_MESSAGE(abi >= 1, "these tests need a kernel with Landlock enabled");
  Tree t;
  auto plan = plan_for(t);
  CHECK(plan.abi == abi);
  CHECK(static_cast<bool>(plan.ruleset));
  CHECK(plan.skipped.empty());
  if (abi >= 7) CHECK(plan.unenforced.empty());
  for (const auto& u : plan.unenforced) MESSAGE("not enforced by this kernel: " << u);
}

TEST_CASE("landlock: writes outside read_write are denied, inside they work") {
  Tree t;
  auto plan = plan_for(t);
  auto out = run_in_child([&](Probe& p) {
    confine(plan);
    p.denied("create outside/new", [&] { return ::open(t.p("outside/new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644); }, EACCES);
    p.denied("open ro/f for writing", [&] { return ::open(t.p("ro/f").c_str(), O_WRONLY | O_CLOEXEC); }, EACCES);
    p.denied("create ro/new", [&] { return ::open(t.p("ro/new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644); }, EACCES);
    p.denied("mkdir ro/d", [&] { return ::mkdir(t.p("ro/d").c_str(), 0755); }, EACCES);
    p.denied("unlink ro/f", [&] { return ::unlink(t.p("ro/f").c_str()); }, EACCES);
    p.denied("mkfifo ro/fifo", [&] { return ::mkfifo(t.p("ro/fifo").c_str(), 0644); }, EACCES);
    p.denied("symlink in ro", [&] { return ::symlink("f", t.p("ro/link").c_str()); }, EACCES);

    long fd = p.allowed("create rw/new", [&] { return ::open(t.p("rw/new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644); });
    if (fd >= 0) {
      p.check("write rw/new", ::write(static_cast<int>(fd), "hello", 5) == 5);
      ::close(static_cast<int>(fd));
    }
    p.allowed("mkdir rw/d", [&] { return ::mkdir(t.p("rw/d").c_str(), 0755); });
    p.allowed("mkfifo rw/fifo", [&] { return ::mkfifo(t.p("rw/fifo").c_str(), 0644); });
    p.allowed("rename rw/new -> rw/d/moved", [&] { return ::rename(t.p("rw/new").c_str(), t.p("rw/d/moved").c_str()); });
    p.allowed("unlink rw/fifo", [&] { return ::unlink(t.p("rw/fifo").c_str()); });
  });
  CHECK_MESSAGE(out.ok(), out.describe());
  CHECK(t.read("rw/d/moved") == "hello");
  CHECK(!std::filesystem::exists(t.p("outside/new")));
  CHECK(t.read("ro/f") == "data");
}

TEST_CASE("landlock: reads outside read_only are denied, inside they work") {
  Tree t;
  auto plan = plan_for(t);
  auto out = run_in_child([&](Probe& p) {
    // Control: the same read works before the domain, so the denial below is Landlock's.
    p.check("outside/secret readable before enforcement", slurp(t.p("outside/secret")) == "secret");
    confine(plan);
    p.denied("read outside/secret", [&] { return ::open(t.p("outside/secret").c_str(), O_RDONLY | O_CLOEXEC); }, EACCES);
    p.denied("list outside/", [&] { return ::open(t.p("outside").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); }, EACCES);
    p.denied("read /etc/passwd", [&] { return ::open("/etc/passwd", O_RDONLY | O_CLOEXEC); }, EACCES);
    p.check("read ro/f gives its data", slurp(t.p("ro/f")) == "data");
    p.check("read rw/file gives its data", slurp(t.p("rw/file")) == "rw data");
    long dfd = p.allowed("list ro/", [&] { return ::open(t.p("ro").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
    if (dfd >= 0) ::close(static_cast<int>(dfd));
  });
  CHECK_MESSAGE(out.ok(), out.describe());
}

TEST_CASE("landlock: a symlink in an allowed directory does not reach outside it") {
  Tree t;
  auto plan = plan_for(t);
  auto out = run_in_child([&](Probe& p) {
    confine(plan);
    p.denied("read rw/to_secret (planted symlink to outside)", [&] { return ::open(t.p("rw/to_secret").c_str(), O_RDONLY | O_CLOEXEC); }, EACCES);
    // The agent may make symlinks in rw/ (MAKE_SYM), but following one is checked on the target.
    p.allowed("symlink rw/mine -> outside/secret", [&] { return ::symlink(t.p("outside/secret").c_str(), t.p("rw/mine").c_str()); });
    p.denied("read rw/mine", [&] { return ::open(t.p("rw/mine").c_str(), O_RDONLY | O_CLOEXEC); }, EACCES);
    p.check("read rw/to_ro (symlink to ro/f) gives its data", slurp(t.p("rw/to_ro")) == "data");
  });
  CHECK_MESSAGE(out.ok(), out.describe());
}

TEST_CASE("landlock: an outside file cannot be hard-linked into an allowed directory") {
  // The trick: link outside/secret into rw/, then read it through the rw/ path, which the rules
  // allow. Linking needs REFER on the source's directory; Landlock answers EXDEV when only that
  // right is missing (EACCES is kept for MAKE_* rights), as documented in landlock(7).
  Tree t;
  auto plan = plan_for(t);
  auto out = run_in_child([&](Probe& p) {
    confine(plan);
    p.denied("link outside/secret -> rw/stolen", [&] { return ::link(t.p("outside/secret").c_str(), t.p("rw/stolen").c_str()); }, EXDEV);
    p.denied("link ro/f -> rw/stolen (read-only source)", [&] { return ::link(t.p("ro/f").c_str(), t.p("rw/stolen").c_str()); }, EXDEV);
    p.denied("rename outside/secret -> rw/stolen", [&] { return ::rename(t.p("outside/secret").c_str(), t.p("rw/stolen").c_str()); }, EACCES);
    p.allowed("link rw/file -> rw/file2", [&] { return ::link(t.p("rw/file").c_str(), t.p("rw/file2").c_str()); });
  });
  CHECK_MESSAGE(out.ok(), out.describe());
  CHECK(!std::filesystem::exists(t.p("rw/stolen")));
  CHECK(t.read("rw/file2") == "rw data");
}

TEST_CASE("landlock: `..` through an allowed directory does not escape it") {
  Tree t;
  auto plan = plan_for(t);
  int rw_dir = ::open(t.p("rw").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);  // held from before
  REQUIRE(rw_dir >= 0);
  auto out = run_in_child([&](Probe& p) {
    confine(plan);
    p.denied("read rw/../outside/secret", [&] { return ::open(t.p("rw/../outside/secret").c_str(), O_RDONLY | O_CLOEXEC); }, EACCES);
    p.denied("openat(rw fd, ../outside/secret)", [&] { return ::openat(rw_dir, "../outside/secret", O_RDONLY | O_CLOEXEC); }, EACCES);
    p.denied("create rw/../outside/new", [&] { return ::open(t.p("rw/../outside/new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644); }, EACCES);
    p.check("read rw/../ro/f gives its data", slurp(t.p("rw/../ro/f")) == "data");
    long fd = p.allowed("openat(rw fd, file)", [&] { return ::openat(rw_dir, "file", O_RDONLY | O_CLOEXEC); });
    if (fd >= 0) ::close(static_cast<int>(fd));
  });
  ::close(rw_dir);
  CHECK_MESSAGE(out.ok(), out.describe());
}

TEST_CASE("landlock: a read-only file cannot be truncated (ABI 3)") {
  if (landlock_abi() < 3) {
    MESSAGE("skipped: Landlock ABI " << landlock_abi() << " has no TRUNCATE right");
    return;
  }
  Tree t;
  auto plan = plan_for(t);
  auto out = run_in_child([&](Probe& p) {
    confine(plan);
    p.denied("truncate(ro/f)", [&] { return ::truncate(t.p("ro/f").c_str(), 0); }, EACCES);
    p.denied("open(ro/f, O_RDONLY|O_TRUNC)", [&] { return ::open(t.p("ro/f").c_str(), O_RDONLY | O_TRUNC | O_CLOEXEC); }, EACCES);
    p.allowed("truncate(rw/file)", [&] { return ::truncate(t.p("rw/file").c_str(), 2); });
  });
  CHECK_MESSAGE(out.ok(), out.describe());
  CHECK(t.read("ro/f") == "data");
  CHECK(t.read("rw/file") == "rw");
}

TEST_CASE("landlock: rules on single files get file rights only and cover only that file") {
  Tree t;
  // The kernel rejects directory rights on a file rule (EINVAL); prepare must fit them.
  auto plan = landlock_prepare({.read_only = {t.p("ro/f")}, .read_write = {t.p("rw/file")}, .hard_requirement = true});
  auto out = run_in_child([&](Probe& p) {
    confine(plan);
    p.check("read ro/f gives its data", slurp(t.p("ro/f")) == "data");
    p.denied("read ro/g (sibling)", [&] { return ::open(t.p("ro/g").c_str(), O_RDONLY | O_CLOEXEC); }, EACCES);
    p.denied("write ro/f", [&] { return ::open(t.p("ro/f").c_str(), O_WRONLY | O_CLOEXEC); }, EACCES);
    long fd = p.allowed("write rw/file", [&] { return ::open(t.p("rw/file").c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC); });
    if (fd >= 0) {
      p.check("write rw/file data", ::write(static_cast<int>(fd), "new", 3) == 3);
      ::close(static_cast<int>(fd));
    }
    p.denied("create rw/other (only the file is granted)", [&] { return ::open(t.p("rw/other").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644); }, EACCES);
  });
  CHECK_MESSAGE(out.ok(), out.describe());
  CHECK(t.read("rw/file") == "new");
}

TEST_CASE("landlock: device ioctls need a read_write rule (ABI 5)") {
  if (landlock_abi() < 5) {
    MESSAGE("skipped: Landlock ABI " << landlock_abi() << " has no IOCTL_DEV right");
    return;
  }
  // TCGETS on /dev/null reaches the driver, which answers ENOTTY; Landlock stops it before with
  // EACCES when the rule lacks IOCTL_DEV.
  auto ro = landlock_prepare({.read_only = {"/dev/null"}, .hard_requirement = true});
  auto out = run_in_child([&](Probe& p) {
    confine(ro);
    long fd = p.allowed("open /dev/null", [&] { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); });
    termios tio{};
    p.denied("ioctl(TCGETS) under read_only", [&] { return ::ioctl(static_cast<int>(fd), TCGETS, &tio); }, EACCES);
  });
  CHECK_MESSAGE(out.ok(), out.describe());
  auto rw = landlock_prepare({.read_write = {"/dev/null"}, .hard_requirement = true});
  out = run_in_child([&](Probe& p) {
    confine(rw);
    long fd = p.allowed("open /dev/null", [&] { return ::open("/dev/null", O_RDWR | O_CLOEXEC); });
    termios tio{};
    p.denied("ioctl(TCGETS) under read_write reaches the driver", [&] { return ::ioctl(static_cast<int>(fd), TCGETS, &tio); }, ENOTTY);
  });
  CHECK_MESSAGE(out.ok(), out.describe());
}

TEST_CASE("landlock: the agent cannot signal or reach abstract sockets outside its domain (ABI 6)") {
  if (landlock_abi() < 6) {
    MESSAGE("skipped: Landlock ABI " << landlock_abi() << " has no scopes");
    return;
  }
  // The test runner plays the supervisor: outside the domain, listening on an abstract socket.
  int srv = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(srv >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string name = "bulwark-landlock-test-" + std::to_string(::getpid());
  std::memcpy(addr.sun_path + 1, name.data(), name.size());  // sun_path[0] = 0: abstract
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  REQUIRE(::bind(srv, reinterpret_cast<sockaddr*>(&addr), len) == 0);
  REQUIRE(::listen(srv, 4) == 0);
  Tree t;
  auto plan = plan_for(t);
  auto out = run_in_child([&](Probe& p) {
    int before = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    p.allowed("connect to the outside socket before enforcement", [&] { return ::connect(before, reinterpret_cast<sockaddr*>(&addr), len); });
    confine(plan);
    pid_t parent = ::getppid();
    p.denied("kill(parent, 0)", [&] { return ::kill(parent, 0); }, EPERM);
    p.denied("kill(parent, SIGCONT)", [&] { return ::kill(parent, SIGCONT); }, EPERM);  // harmless if it got through
    int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    p.denied("connect to the outside abstract socket", [&] { return ::connect(s, reinterpret_cast<sockaddr*>(&addr), len); }, EPERM);

    // Inside the domain both still work.
    pid_t kid = ::fork();
    if (kid == 0) {
      ::pause();
      ::_exit(0);
    }
    p.allowed("kill(own child, SIGKILL)", [&] { return ::kill(kid, SIGKILL); });
    ::waitpid(kid, nullptr, 0);
    int mine = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a2 = addr;
    a2.sun_path[1] = 'B';  // a different abstract name, created inside the domain
    p.allowed("bind own abstract socket", [&] { return ::bind(mine, reinterpret_cast<sockaddr*>(&a2), len); });
    p.allowed("listen", [&] { return ::listen(mine, 1); });
    int c = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    p.allowed("connect to own abstract socket", [&] { return ::connect(c, reinterpret_cast<sockaddr*>(&a2), len); });
  });
  ::close(srv);
  CHECK_MESSAGE(out.ok(), out.describe());
}

TEST_CASE("landlock: a missing path is skipped under best effort and fatal when required") {
  Tree t;
  std::string missing = t.p("no/such/dir");
  auto plan = landlock_prepare({.read_only = {missing, t.p("ro")}, .read_write = {t.p("rw")}});
  REQUIRE(plan.skipped.size() == 1);
  CHECK(plan.skipped[0].find(missing) == 0);
  CHECK(plan.skipped[0].find("path does not exist") != std::string::npos);
  CHECK(static_cast<bool>(plan.ruleset));

  try {
    landlock_prepare({.read_only = {t.p("ro")}, .read_write = {missing}, .hard_requirement = true});
    FAIL("a missing path under hard_requirement must throw");
  } catch (const Error& e) {
    std::string what = e.what();
    CHECK(what.find(missing) != std::string::npos);
    CHECK(what.find("errno 2") != std::string::npos);  // ENOENT
    CHECK(e.field() == "landlock.read_write");
  }
}

TEST_CASE("landlock: enforcing without no_new_privs is refused, and a plan enforces once") {
  Tree t;
  auto plan = plan_for(t);
  auto out = run_in_child([&](Probe& p) {
    try {
      landlock_enforce(plan);  // no prctl(PR_SET_NO_NEW_PRIVS) first
      p.fail("enforce without no_new_privs did not throw");
    } catch (const Error& e) {
      p.check(std::string("kFailedPrecondition, got: ") + e.what(), e.code() == Code::kFailedPrecondition);
    }
    p.check("not restricted after the refusal", slurp(t.p("outside/secret")) == "secret");
    confine(plan);
    p.check("the ruleset fd is closed after enforcement", !plan.ruleset);
    try {
      landlock_enforce(plan);
      p.fail("second enforce of the same plan did not throw");
    } catch (const Error& e) {
      p.check(std::string("kFailedPrecondition, got: ") + e.what(), e.code() == Code::kFailedPrecondition);
    }
  });
  CHECK_MESSAGE(out.ok(), out.describe());
}

TEST_CASE("Landlock audit: only the tagged sandbox's denials come out, the first one included") {
  LandlockDenialFilter f("bw-0123456789ab");
  // Another sandbox's domain: never ours.
  CHECK(f.feed(kAuditLandlockAccess, "domain=aaa blockers=fs.read_file path=\"/x\" dev=\"vda\" ino=1").empty());
  CHECK(f.feed(kAuditLandlockDomain, "domain=aaa status=allocated mode=enforcing pid=9 uid=0 exe=\"/s\" comm=\"bw-ffffffffffff\"").empty());
  // Ours: the first access record arrives before the domain record that identifies it.
  CHECK(f.feed(kAuditLandlockAccess, "domain=bbb blockers=fs.write_file path=\"/etc/passwd\" dev=\"vda\" ino=2").empty());
  auto first = f.feed(kAuditLandlockDomain,
                      "domain=bbb status=allocated mode=enforcing pid=7 uid=0 exe=\"/s\" comm=\"bw-0123456789ab\"");
  REQUIRE(first.size() == 1);
  CHECK(first[0] == "landlock fs.write_file path=\"/etc/passwd\" dev=\"vda\" ino=2");
  auto next = f.feed(kAuditLandlockAccess, "domain=bbb blockers=fs.refer path=\"/tmp\" dev=\"vda\" ino=3");
  REQUIRE(next.size() == 1);
  CHECK(next[0].rfind("landlock fs.refer", 0) == 0);
  CHECK(f.feed(kAuditLandlockAccess, "domain=aaa blockers=fs.read_file path=\"/y\"").empty());
  // A deallocation record of our domain is no denial.
  CHECK(f.feed(kAuditLandlockDomain, "domain=bbb status=deallocated denials=2").empty());
}
