// The attack suite: every escape attempt in probe.cpp, run as a real program inside a real
// sandbox, on both paths: the supervisor alone on this host (--standalone) and a podman
// container through the whole suite. Each must be denied with its precise error and logged;
// each positive twin must work. docs/security.md maps every layer to these cases.
#include <doctest/doctest.h>
#include <sys/un.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "shared/error.h"
#include "shared/util.h"
#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A TCP echo service (one thread, one client at a time is enough here).
class EchoServer {
 public:
  explicit EchoServer(const char* bind_addr) {
    fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, bind_addr, &a.sin_addr);
    int one = 1;
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t len = sizeof a;
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_.get(), 16) != 0 ||
        ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw Error(Code::kInternal, errno_text("echo server", errno));
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        int c = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        ++accepted;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(c, buf, sizeof buf)) > 0) (void)!::write(c, buf, static_cast<size_t>(n));
        ::close(c);
      }
    });
  }
  ~EchoServer() {
    ::shutdown(fd_.get(), SHUT_RDWR);
    thread_.join();
  }
  int port() const { return port_; }
  std::atomic<int> accepted{0};

 private:
  Fd fd_;
  int port_ = 0;
  std::thread thread_;
};

// This host's first IPv4 address that is neither loopback nor a sandbox veth.
std::string host_ip() {
  ifaddrs* ifs = nullptr;
  ::getifaddrs(&ifs);
  std::string out;
  for (auto* i = ifs; i && out.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    char buf[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
    std::string ip = buf;
    if (ip.rfind("127.", 0) != 0 && ip.rfind("10.200.", 0) != 0) out = ip;
  }
  ::freeifaddrs(ifs);
  return out.empty() ? "192.0.2.1" : out;
}

struct Attack {
  std::string name;
  std::vector<std::string> args;
  // What the supervisor itself logs for this attempt ("denied: seccomp ptrace", ...). Empty:
  // refused by the kernel's ordinary checks (no capability, a PID or address that does not
  // exist in the sandbox, a resource limit), which raise no event to log; docs/security.md.
  std::string log;
  // Run with --transparent-egress false (standalone only: the drivers start the supervisor with
  // its defaults).
  bool opaque = false;
};

const std::string kLandlock = "denied: landlock ";
std::string sc(const std::string& syscall) { return "denied: seccomp " + syscall; }

// Everything an attack needs to know about where it runs.
struct Place {
  std::string secret;      // a file outside every allowed path
  std::string writable;    // a read_write directory
  std::string setuid_bin;  // a setuid-root copy of the probe
  std::string credential_name, credential_value;
  std::string outside_ip;  // a host address with a service on any_port
  int any_port;            // service listening on 0.0.0.0
  int loopback_port;       // service listening on the host's 127.0.0.1
  std::string supervisor_pid;
  std::string dotdot_secret;  // the secret reached through the writable dir and ".."
  std::string owned_read_only;  // a file the agent's uid owns, in a read_only directory
  std::string host_socket;      // a listening unix socket in the host's /tmp (outside the policy)
  std::string host_tmp_file;    // a file in the host's /tmp
};

std::vector<Attack> attacks(const Place& p, bool standalone) {
  std::vector<Attack> a = {
      {"write-outside", {}, kLandlock},
      {"write-read-only-file", {p.owned_read_only}, kLandlock},
      {"read-secret", {p.secret}, kLandlock},
      {"list-secret-dir", {p.secret}, kLandlock},
      {"symlink-escape", {p.secret, p.writable}, kLandlock},
      {"hardlink-escape", {p.secret, p.writable}, kLandlock},
      {"dotdot-escape", {p.dotdot_secret}, kLandlock},
      {"truncate-read-only", {p.owned_read_only}, kLandlock},
      {"write-proc-sys", {}},  // root-owned: file permissions refuse it before Landlock,
      {"ptrace-sibling", {}, sc("ptrace")},
      {"ptrace-traceme", {}, sc("ptrace")},
      {"process-vm-readv", {}, sc("process_vm_readv")},
      {"mount-tmpfs", {p.writable}, sc("mount")},
      {"unshare-userns", {}, sc("unshare(flags 0x10000000)")},
      {"unshare-netns", {}, sc("unshare(flags 0x40000000)")},
      {"clone-newuser", {}, sc("clone(flags 0x10000011)")},
      {"clone3-newns", {}, sc("clone3(flags 0x10020000)")},
      {"setns", {}, sc("setns")},
      {"chroot", {}, sc("chroot")},
      {"pivot-root", {}, sc("pivot_root")},
      {"setuid-root", {}, sc("setuid to root")},
      {"setuid-binary", {p.setuid_bin}},
      {"capabilities", {}},
      {"load-module", {}, sc("finit_module")},
      {"init-module", {}, sc("init_module")},
      {"bpf", {}, sc("bpf")},
      {"perf-event-open", {}, sc("perf_event_open")},
      {"keyctl", {}, sc("keyctl")},
      {"add-key", {}, sc("add_key")},
      {"io-uring", {}, sc("io_uring_setup")},
      {"userfaultfd", {}, sc("userfaultfd")},
      {"memfd-create", {}, sc("memfd_create")},
      {"open-by-handle", {}, sc("open_by_handle_at")},
      {"kexec", {}, sc("kexec_load")},
      {"reboot", {}, sc("reboot")},
      {"personality", {}, sc("personality(0x400000)")},
      {"x32-syscall", {}},
      {"fork-bomb", {}},
      {"kill-supervisor", {p.supervisor_pid}},
      {"proc-environ", {}},
      {"find-credential", {p.credential_value}},
      {"raw-socket", {}, sc("socket(AF_INET, type 3")},
      {"packet-socket", {}, sc("socket(AF_PACKET")},
      {"netlink-socket", {}, sc("socket(AF_NETLINK")},
      // Transparent egress (the default): the proxy takes the connection, finds no name in it and
      // no rule for the address, and resets it; the sandbox's DNS answers unknown names NXDOMAIN.
      {"direct-connect", {p.outside_ip, std::to_string(p.any_port)},
       "denied: proxy transparent CONNECT " + p.outside_ip + ":" + std::to_string(p.any_port)},
      {"dns-public", {}, "denied: direct udp to 8.8.8.8:53"},
      {"dns-host-resolver", {}, "denied: dns example.com"},
      {"ipv6-connect", {"2001:db8::1", "443"}},  // no IPv6 in the namespace: no route, nothing to log
      {"host-loopback", {std::to_string(p.loopback_port)}},  // never leaves the agent's namespace
      // The host's /tmp is covered by the sandbox's own (Landlock cannot stop a connect()).
      {"unix-socket-outside", {p.host_socket}},
      {"supervisor-side-port", {std::to_string(p.any_port)}, "denied: direct tcp"},
      {"proxy-denies-host", {"evil.example:443"}, "denied: proxy CONNECT evil.example:443"},
  };
  if (standalone) {
    // --transparent-egress false: only the proxy is reachable; the firewall refuses the rest.
    a.push_back({"direct-connect-refused", {p.outside_ip, std::to_string(p.any_port)}, "denied: direct tcp to " + p.outside_ip, true});
    a.push_back({"dns-host-resolver-refused", {}, "denied: direct udp", true});
  }
  // BULWARK_ESCAPE_ONLY=name runs one attack (for debugging a single case by hand).
  if (const char* only = std::getenv("BULWARK_ESCAPE_ONLY")) std::erase_if(a, [&](const Attack& x) { return x.name != only; });
  return a;
}

std::vector<Attack> twins(const Place& p) {
  return {
      {"ok-write-workdir", {p.writable}},
      {"ok-tmp-private", {p.host_tmp_file}},
      {"ok-read-etc", {}},
      {"ok-fork-thread", {}},
      {"ok-sockets", {}},
      {"ok-own-loopback", {}},
      {"ok-proxy-allowed", {"127.0.0.1:" + std::to_string(p.loopback_port)}},
      {"ok-credential-env", {p.credential_name, p.credential_value}},
  };
}

std::string network_policy(int allowed_port, const std::string& probe) {
  return "network_policies:\n"
         "  echo:\n"
         "    endpoints:\n"
         "      - { host: 127.0.0.1, port: " + std::to_string(allowed_port) + " }\n"
         "    binaries:\n"
         "      - { path: " + probe + " }\n";
}

void check_outcome(const Attack& a, int code, const std::string& out, bool positive) {
  CAPTURE(a.name);
  CAPTURE(out);
  CHECK(code == 0);
  CHECK(out.find((positive ? "OK " : "DENIED ") + a.name) != std::string::npos);
  CHECK(out.find("ESCAPE") == std::string::npos);
  if (!a.log.empty()) CHECK(out.find(a.log) != std::string::npos);  // logged by the supervisor itself
}

}  // namespace

TEST_CASE("attack suite, standalone: the supervisor alone on this host denies and logs every attempt") {
  require_binary("nft", "nftables");
  // Not under /tmp: the sandbox covers the host's /tmp, and these must stay where they are.
  TempDir dir("bulwark-escape", "/var/lib");
  ::chmod(dir.path().c_str(), 0755);  // the agent (uid 1000) must traverse to its writable dir
  // In the host's /tmp: a unix socket with a listener and a file, both out of the agent's sight.
  TempDir host_tmp("bulwark-escape-host");
  ::chmod(host_tmp.path().c_str(), 0755);
  std::string host_socket = host_tmp.file("agent-must-not-reach.sock");
  Fd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::snprintf(sun.sun_path, sizeof sun.sun_path, "%s", host_socket.c_str());
  REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
  REQUIRE(::listen(listener.get(), 8) == 0);
  ::chmod(host_socket.c_str(), 0777);
  std::ofstream(host_tmp.file("marker")) << "host\n";
  std::string rw = dir.file("rw"), secret_dir = dir.file("secret"), suid_dir = dir.file("suid");
  for (const auto& d : {rw, secret_dir, suid_dir}) ::mkdir(d.c_str(), 0755);
  ::chmod(rw.c_str(), 0777);
  std::ofstream(secret_dir + "/token") << "host-secret-" << random_hex(8) << "\n";
  // Owned by the agent's uid: only Landlock stands between it and the agent (not permissions,
  // nor the kernel's protected_hardlinks).
  REQUIRE(::chown((secret_dir + "/token").c_str(), 1000, 1000) == 0);
  std::string probe = bin("bulwark-escape-probe");
  std::string suid = suid_dir + "/probe";
  REQUIRE(std::system(("cp " + probe + " " + suid + " && chmod 4755 " + suid).c_str()) == 0);
  EchoServer loopback("127.0.0.1"), any("0.0.0.0");
  std::string policy_file = dir.file("policy.yaml");
  std::ofstream(policy_file) << "version: 1\n"
                                "filesystem_policy:\n"
                                "  read_only: [/usr, /lib, /lib64, /bin, /sbin, /etc, /proc, /dev/urandom, "
                             << std::string(BULWARK_BIN_DIR) << ", " << suid_dir << "]\n"
                             << "  read_write: [" << rw << ", /dev/null, /tmp]\n"
                             << network_policy(loopback.port(), probe);
  Place p{secret_dir + "/token", rw, suid, "BULWARK_TEST_CRED_NAME", "cred-" + random_hex(12), host_ip(), any.port(),
          loopback.port(), std::to_string(::getpid()), rw + "/../secret/token", suid_dir + "/owned", host_socket,
          host_tmp.file("marker")};
  p.credential_name = "AGENT_TOKEN";
  std::ofstream(p.owned_read_only) << "read-only\n";
  REQUIRE(::chown(p.owned_read_only.c_str(), 1000, 1000) == 0);

  auto run = [&](const Attack& a, bool positive) {
    std::vector<std::string> argv = {bin("bulwark-supervisor"), "--standalone", "--policy", policy_file};
    if (a.opaque) argv.insert(argv.end(), {"--transparent-egress", "false"});
    argv.insert(argv.end(), {"--", probe, a.name});
    argv.insert(argv.end(), a.args.begin(), a.args.end());
    std::vector<std::string> env = {"PATH=/usr/bin:/bin", p.credential_name + "=" + p.credential_value};
    std::string log = dir.file("run-" + a.name + ".log");
    auto proc = Process::spawn({.argv = argv, .env = env, .output_file = log});
    auto code = proc.wait_for(60s);
    if (!code) proc.stop();
    check_outcome(a, code.value_or(-1), read_file(log), positive);
  };
  for (const auto& a : attacks(p, true)) run(a, false);
  for (const auto& t : twins(p)) run(t, true);
  CHECK(any.accepted == 0);  // nothing ever got through to the host service
}

TEST_CASE("attack suite, podman: the same attempts in a container sandbox through the whole suite") {
  require_binary("nft", "nftables");
  podman_socket();  // sets CONTAINERS_CONF for the podman CLI below
  // An image with the probe, a setuid-root copy of it, and a secret outside every allowed path.
  TempDir build("bulwark-escape-image");
  std::string root = build.file("rootfs");
  std::string cmd = "set -e; mkdir -p " + root + "/bin " + root + "/etc " + root + "/tmp " + root + "/proc " + root + "/sys " +
                    root + "/dev " + root + "/sandbox " + root + "/probe " + root + "/secret; chmod 1777 " + root + "/tmp " +
                    root + "/sandbox; cp /bin/busybox " + root + "/bin/; for a in $(/bin/busybox --list); do [ -e " + root +
                    "/bin/$a ] || ln -s busybox " + root + "/bin/$a; done; " +
                    "printf 'root:x:0:0::/root:/bin/sh\\nsandbox:x:1000:1000::/sandbox:/bin/sh\\n' > " + root + "/etc/passwd; " +
                    "printf 'root:x:0:\\nsandbox:x:1000:\\n' > " + root + "/etc/group; " +
                    "cp " + bin("bulwark-escape-probe") + " " + root + "/probe/bulwark-escape-probe; cp " +
                    bin("bulwark-escape-probe") + " " + root + "/probe/suid-probe; chmod 4755 " + root + "/probe/suid-probe; " +
                    "echo container-secret > " + root + "/secret/token; chown 1000:1000 " + root + "/secret/token; chmod 600 " + root +
                    "/secret/token; echo image > " + root + "/tmp/image-marker; echo read-only > " + root + "/probe/owned; chown 1000:1000 " + root + "/probe/owned; " +
                    "tar -C " + root + " -c . | podman import - localhost/bulwark/escape:test >/dev/null";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "building the escape image failed");

  Suite suite;
  EchoServer loopback("127.0.0.1"), any("0.0.0.0");
  // /sandbox, not /tmp: /tmp is the sandbox's own tmpfs, another filesystem than /secret.
  Place p{"/secret/token", "/sandbox", "/probe/suid-probe", "AGENT_TOKEN", "cred-" + random_hex(12), host_ip(), any.port(),
          loopback.port(), std::to_string(::getpid()), "/sandbox/../secret/token", "/probe/owned",
          "/run/agent-must-not-reach.sock", "/tmp/image-marker"};
  std::string policy = "version: 1\n"
                       "filesystem_policy:\n"
                       "  read_only: [/bin, /etc, /proc, /dev/urandom, /probe]\n"
                       "  read_write: [/tmp, /dev/null, /sandbox]\n" +
                       network_policy(loopback.port(), "/probe/bulwark-escape-probe");

  auto run = [&](const Attack& a, bool positive) {
    json command = json::array({"/probe/bulwark-escape-probe", a.name});
    for (const auto& x : a.args) command.push_back(x);
    auto s = suite.create({{"image", "localhost/bulwark/escape:test"},
                           {"command", command},
                           {"env", {{p.credential_name, p.credential_value}}},
                           {"policy", policy}});
    std::string id = s["sandbox_id"];
    s = suite.wait_phase(id, {"EXITED", "FAILED"}, 60s);
    std::string out;
    // The probe's line and the supervisor's notices arrive as log lines.
    wait_until([&] {
      auto r = suite.client().Get("/v1/sandboxes/" + id + "/logs");
      out.clear();
      if (r && r->status == 200) {
        json body = json::parse(r->body);  // kept alive: the loop below walks into it
        for (const auto& l : body["lines"]) out += l.value("stream", "") + ": " + l.value("line", "") + "\n";
      }
      return out.find(a.name) != std::string::npos && (a.log.empty() || out.find(a.log) != std::string::npos);
    }, 10s);
    check_outcome(a, s.value("exit_code", -1), out + "(phase " + s.value("phase", "") + ": " + s.value("reason", "") + ")", positive);
    CHECK(s["confinement"].value("landlock_abi", 0) >= 1);
    suite.client().Delete("/v1/sandboxes/" + id);
  };
  for (const auto& a : attacks(p, false)) run(a, false);
  for (const auto& t : twins(p)) run(t, true);
  CHECK(any.accepted == 0);
}

TEST_CASE("a confinement step that cannot be enforced aborts the sandbox, naming the step; best_effort reports it") {
  TempDir dir("bulwark-confine-fail");
  std::string hard = dir.file("hard.yaml");
  std::ofstream(hard) << "version: 1\nlandlock:\n  compatibility: hard_requirement\nfilesystem_policy:\n"
                         "  read_only: [/bin, /usr, /lib, /lib64, /etc, /does/not/exist]\n  read_write: [/tmp]\n";
  auto p = Process::spawn({.argv = {bin("bulwark-supervisor"), "--standalone", "--policy", hard, "--", "/bin/true"},
                           .output_file = dir.file("hard.log")});
  CHECK(p.wait() == 126);
  auto out = read_file(dir.file("hard.log"));
  CHECK_MESSAGE(out.find("landlock: prepare") != std::string::npos, out);
  CHECK_MESSAGE(out.find("/does/not/exist") != std::string::npos, out);

  Suite suite;
  auto s = suite.create({{"command", {"true"}},
                         {"policy", "version: 1\nlandlock:\n  compatibility: hard_requirement\nfilesystem_policy:\n"
                                    "  read_only: [/bin, /etc, /does/not/exist]\n  read_write: [/tmp]\n"}});
  s = suite.wait_phase(s["sandbox_id"], {"FAILED", "EXITED"});
  CHECK(s["phase"] == "FAILED");
  CHECK_MESSAGE(s["reason"].get<std::string>().find("landlock: prepare") != std::string::npos, s["reason"]);

  // best_effort: the same missing path is skipped, the sandbox runs, and the status says so.
  s = suite.create({{"command", {"true"}},
                    {"policy", "version: 1\nfilesystem_policy:\n  read_only: [/bin, /etc, /does/not/exist]\n  read_write: [/tmp]\n"}});
  s = suite.wait_phase(s["sandbox_id"], {"FAILED", "EXITED"});
  CHECK(s["phase"] == "EXITED");
  CHECK(s["exit_code"] == 0);
  CHECK_MESSAGE(s["confinement"]["notes"].dump().find("/does/not/exist") != std::string::npos, s.dump(2));
}
