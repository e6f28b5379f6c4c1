// Caller identification: the /proc and sock_diag parsers on fixed input, then the real /proc and
// sock_diag with this test process (or one of its threads, in a network namespace of its own) as
// the "agent's init".
#include "supervisor/proxy/binary_identity.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <signal.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "shared/error.h"
#include "shared/process.h"

using namespace bulwark::proxy;
using tcp = asio::ip::tcp;
namespace fs = std::filesystem;

namespace {

std::array<uint8_t, 16> addr(const char* s) { return mapped_bytes(asio::ip::make_address(s)); }

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string data = ss.str();
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  REQUIRE(EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) == 1);
  return std::string(reinterpret_cast<char*>(md), len);
}

// Accepts one connection within 10 s.
tcp::socket accept_one(tcp::acceptor& a) {
  pollfd p{a.native_handle(), POLLIN, 0};
  REQUIRE_MESSAGE(::poll(&p, 1, 10000) == 1, "nobody connected");
  return a.accept();
}

uint64_t inode_of_fd(int fd) {
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  return st.st_ino;
}

bool have_ipv6() { return fs::exists("/proc/net/if_inet6"); }

template <class T>
T from_bytes(const std::string& b, size_t at = 0) {
  T v;
  REQUIRE(b.size() >= at + sizeof v);
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}

template <class T>
std::string bytes_of(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

tcp::endpoint ep(const char* a, uint16_t port) { return {asio::ip::make_address(a), port}; }

// A reply as the kernel sends it for one socket.
std::string diag_msg(uint32_t seq, uint8_t family, uint8_t state, const char* src, uint16_t sport, const char* dst,
                     uint16_t dport, uint32_t inode) {
  struct {
    nlmsghdr h;
    inet_diag_msg m;
  } r{};
  r.h.nlmsg_len = sizeof r;
  r.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  r.h.nlmsg_seq = seq;
  r.m.idiag_family = family;
  r.m.idiag_state = state;
  r.m.id.idiag_sport = htons(sport);
  r.m.id.idiag_dport = htons(dport);
  REQUIRE(::inet_pton(family, src, r.m.id.idiag_src) == 1);
  REQUIRE(::inet_pton(family, dst, r.m.id.idiag_dst) == 1);
  r.m.idiag_inode = inode;
  return bytes_of(r);
}

std::string nl_error(uint32_t seq, int err) {
  struct {
    nlmsghdr h;
    nlmsgerr e;
  } r{};
  r.h.nlmsg_len = sizeof r;
  r.h.nlmsg_type = NLMSG_ERROR;
  r.h.nlmsg_seq = seq;
  r.e.error = err;
  return bytes_of(r);
}

std::string nl_done(uint32_t seq, int err) {
  struct {
    nlmsghdr h;
    int e;
  } r{};
  r.h.nlmsg_len = sizeof r;
  r.h.nlmsg_type = NLMSG_DONE;
  r.h.nlmsg_seq = seq;
  r.e = err;
  return bytes_of(r);
}

// A thread in a network namespace of its own, with one loopback connection in it: /proc/<tid> is
// then an "agent's init" whose namespace is not this process's.
struct NetnsThread {
  NetnsThread() {
    std::promise<std::string> ready;
    auto ready_f = ready.get_future();
    t = std::thread([this, &ready] {
      auto fail = [&](const std::string& what) { ready.set_value(bulwark::errno_text(what, errno)); };
      tid = ::gettid();
      if (::unshare(CLONE_NEWNET) != 0) return fail("unshare(CLONE_NEWNET)");
      bulwark::Fd ctl(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      ifreq ifr{};
      std::strcpy(ifr.ifr_name, "lo");
      if (!ctl || ::ioctl(ctl.get(), SIOCGIFFLAGS, &ifr) != 0) return fail("get lo's flags");
      ifr.ifr_flags |= IFF_UP;
      if (::ioctl(ctl.get(), SIOCSIFFLAGS, &ifr) != 0) return fail("bring lo up");
      listener.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      client.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      socklen_t len = sizeof a;
      if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listener.get(), 1) != 0 ||
          ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
        return fail("listen on 127.0.0.1");
      if (::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return fail("connect");
      accepted.reset(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!accepted) return fail("accept");
      ready.set_value("");
      finish.get_future().wait();  // the namespace path /proc/<tid>/ns/net lives as long as the thread
    });
    error = ready_f.get();
  }
  ~NetnsThread() {
    finish.set_value();
    t.join();
  }
  // The accepted end's view, as the proxy's accept() would give it.
  tcp::endpoint endpoint(bool peer) const {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    REQUIRE((peer ? ::getpeername : ::getsockname)(accepted.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
    return {asio::ip::address_v4(ntohl(a.sin_addr.s_addr)), ntohs(a.sin_port)};
  }

  std::thread t;
  pid_t tid = 0;
  std::string error;
  bulwark::Fd listener, client, accepted;
  std::promise<void> finish;
};

}  // namespace

TEST_CASE("build_diag_request: an exact IPv4 or IPv6 lookup, cookie ignored; the probe walks no table") {
  auto v4 = build_diag_request(ep("10.200.0.10", 50000), ep("10.200.0.1", 3128), 7);
  REQUIRE(v4.size() == NLMSG_LENGTH(sizeof(inet_diag_req_v2)));
  auto h = from_bytes<nlmsghdr>(v4);
  CHECK(h.nlmsg_len == v4.size());
  CHECK(h.nlmsg_type == SOCK_DIAG_BY_FAMILY);
  CHECK(h.nlmsg_flags == NLM_F_REQUEST);
  CHECK(h.nlmsg_seq == 7u);
  auto r = from_bytes<inet_diag_req_v2>(v4, NLMSG_HDRLEN);
  CHECK(r.sdiag_family == AF_INET);
  CHECK(r.sdiag_protocol == IPPROTO_TCP);
  CHECK(r.idiag_states == ~0u);
  CHECK(ntohs(r.id.idiag_sport) == 50000);
  CHECK(ntohs(r.id.idiag_dport) == 3128);
  CHECK(r.id.idiag_src[0] == ::inet_addr("10.200.0.10"));
  CHECK(r.id.idiag_dst[0] == ::inet_addr("10.200.0.1"));
  CHECK(r.id.idiag_src[1] == 0);
  CHECK(r.id.idiag_cookie[0] == INET_DIAG_NOCOOKIE);
  CHECK(r.id.idiag_cookie[1] == INET_DIAG_NOCOOKIE);

  // A dual-stack listener sees an IPv4 client as ::ffff:a.b.c.d: still an AF_INET lookup.
  auto mapped = from_bytes<inet_diag_req_v2>(build_diag_request(ep("::ffff:10.200.0.10", 50000),
                                                                ep("::ffff:10.200.0.1", 3128), 8), NLMSG_HDRLEN);
  CHECK(mapped.sdiag_family == AF_INET);
  CHECK(mapped.id.idiag_src[0] == ::inet_addr("10.200.0.10"));

  auto v6 = from_bytes<inet_diag_req_v2>(build_diag_request(ep("fd00::10", 50000), ep("fd00::1", 3128), 9), NLMSG_HDRLEN);
  CHECK(v6.sdiag_family == AF_INET6);
  in6_addr want{};
  REQUIRE(::inet_pton(AF_INET6, "fd00::10", &want) == 1);
  CHECK(std::memcmp(v6.id.idiag_src, &want, 16) == 0);

  auto probe = build_diag_probe(3);
  CHECK(from_bytes<nlmsghdr>(probe).nlmsg_flags == (NLM_F_REQUEST | NLM_F_DUMP));
  CHECK(from_bytes<inet_diag_req_v2>(probe, NLMSG_HDRLEN).idiag_states == 0u);
}

TEST_CASE("parse_diag_reply: only the exact pair's open socket counts; errors, late replies, truncation") {
  using Kind = DiagReply::Kind;
  const auto src = ep("10.200.0.10", 50000), dst = ep("10.200.0.1", 3128);
  auto parse = [&](const std::string& buf, uint32_t seq = 5) { return parse_diag_reply(buf, seq, src, dst); };

  auto found = parse(diag_msg(5, AF_INET, TCP_ESTABLISHED, "10.200.0.10", 50000, "10.200.0.1", 3128, 4242));
  CHECK(found.kind == Kind::kFound);
  CHECK(found.inode == 4242u);
  // An IPv6 socket connected to a mapped address answers in AF_INET6 form.
  auto v6 = parse(diag_msg(5, AF_INET6, TCP_ESTABLISHED, "::ffff:10.200.0.10", 50000, "::ffff:10.200.0.1", 3128, 7));
  CHECK(v6.kind == Kind::kFound);
  CHECK(v6.inode == 7u);
  // The buffer need not be aligned.
  std::string odd = "x" + diag_msg(5, AF_INET, TCP_ESTABLISHED, "10.200.0.10", 50000, "10.200.0.1", 3128, 9);
  CHECK(parse_diag_reply(std::string_view(odd).substr(1), 5, src, dst).inode == 9u);

  // The kernel's fallback for a pair with no connection: a listener on src's address and port.
  CHECK(parse(diag_msg(5, AF_INET, TCP_LISTEN, "10.200.0.10", 50000, "0.0.0.0", 0, 11)).kind == Kind::kNotFound);
  CHECK(parse(diag_msg(5, AF_INET, TCP_ESTABLISHED, "10.200.0.10", 50000, "10.200.0.2", 3128, 11)).kind ==
        Kind::kNotFound);
  CHECK(parse(diag_msg(5, AF_INET, TCP_ESTABLISHED, "10.200.0.10", 50001, "10.200.0.1", 3128, 11)).kind ==
        Kind::kNotFound);
  // Closed: TIME_WAIT, or orphaned, has no inode.
  CHECK(parse(diag_msg(5, AF_INET, TCP_TIME_WAIT, "10.200.0.10", 50000, "10.200.0.1", 3128, 0)).kind ==
        Kind::kNotFound);

  CHECK(parse(nl_error(5, -ENOENT)).kind == Kind::kNotFound);
  auto perm = parse(nl_error(5, -EPERM));
  CHECK(perm.kind == Kind::kError);
  CHECK(perm.error == EPERM);
  CHECK(parse(nl_done(5, 0)).kind == Kind::kDone);
  auto done_err = parse(nl_done(5, -ENOENT));
  CHECK(done_err.kind == Kind::kError);
  CHECK(done_err.error == ENOENT);

  // A late reply to an earlier query is skipped, alone or ahead of ours.
  std::string late = diag_msg(4, AF_INET, TCP_ESTABLISHED, "10.200.0.10", 50000, "10.200.0.1", 3128, 1);
  CHECK(parse(late).kind == Kind::kPending);
  CHECK(parse(late + nl_error(5, -ENOENT)).kind == Kind::kNotFound);
  CHECK(parse("").kind == Kind::kPending);

  std::string cut = diag_msg(5, AF_INET, TCP_ESTABLISHED, "10.200.0.10", 50000, "10.200.0.1", 3128, 1);
  CHECK(parse(cut.substr(0, cut.size() - 1)).error == EBADMSG);
  std::string short_payload = cut;
  nlmsghdr h = from_bytes<nlmsghdr>(short_payload);
  h.nlmsg_len = NLMSG_HDRLEN + 8;
  std::memcpy(short_payload.data(), &h, sizeof h);
  CHECK(parse(short_payload.substr(0, h.nlmsg_len)).error == EBADMSG);
}

TEST_CASE("parse_tcp_line: IPv4, IPv6 and IPv4-mapped entries; the header is not an entry") {
  auto v4 = parse_tcp_line(
      "   3: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 123456 1 "
      "0000000000000000 20 4 30 10 -1");
  REQUIRE(v4);
  CHECK(v4->local == addr("127.0.0.1"));
  CHECK(v4->local_port == 8080);
  CHECK(v4->remote == addr("127.0.0.1"));
  CHECK(v4->remote_port == 54321);
  CHECK(v4->state == 1);
  CHECK(v4->inode == 123456);

  // Each 32-bit word is printed as the host-order integer holding network-order bytes (x86 and
  // arm64 are little-endian, as these literals assume).
  auto v6 = parse_tcp_line(
      "   0: 00000000000000000000000001000000:0050 0000000000000000FFFF00000A00C80A:C350 0A 00000000:00000000 "
      "00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0");
  REQUIRE(v6);
  CHECK(v6->local == addr("::1"));
  CHECK(v6->local_port == 80);
  CHECK(v6->remote == addr("10.200.0.10"));  // ::ffff:10.200.0.10 and 10.200.0.10 compare equal
  CHECK(v6->state == 10);
  CHECK(v6->inode == 99);

  CHECK_FALSE(parse_tcp_line("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
                             "timeout inode"));
  CHECK_FALSE(parse_tcp_line(""));
  CHECK_FALSE(parse_tcp_line("   0: 0100007F:1F90 0100007F 01 0:0 0:0 0 0 0 5"));
  CHECK_FALSE(parse_tcp_line("   0: 0100007G:1F90 0100007F:0001 01 0:0 0:0 0 0 0 5"));
}

TEST_CASE("parse_status_ppid, parse_socket_link, strip_deleted") {
  CHECK(parse_status_ppid("Name:\tcurl\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\nPPid:\t7\n") == 7);
  CHECK(parse_status_ppid("Name:\tinit\nPPid:\t0") == 0);
  CHECK_FALSE(parse_status_ppid("Name:\tx\nPid:\t3\n"));
  CHECK_FALSE(parse_status_ppid("PPid:\tx1\n"));
  CHECK(parse_socket_link("socket:[12345]") == 12345u);
  CHECK_FALSE(parse_socket_link("pipe:[12345]"));
  CHECK_FALSE(parse_socket_link("socket:[]"));
  CHECK_FALSE(parse_socket_link("socket:[12a]"));
  CHECK(strip_deleted("/usr/bin/python3 (deleted)") == "/usr/bin/python3");
  CHECK(strip_deleted("/usr/bin/python3") == "/usr/bin/python3");
  CHECK(to_hex("\x01\xab") == "01ab");
}

TEST_CASE("the real /proc: a connection from this process is traced to this executable, pinned by SHA-256") {
  asio::io_context io;
  tcp::acceptor server(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(io);
  client.connect(server.local_endpoint());
  tcp::socket accepted = accept_one(server);

  BinaryIdentifier id(::getpid());
  Caller c = id.identify(accepted.remote_endpoint(), accepted.local_endpoint());
  REQUIRE_MESSAGE(c.error.empty(), c.error);
  CHECK(id.uses_sock_diag());
  CHECK(c.pid == ::getpid());
  REQUIRE(c.exe_chain.size() == 1);  // this process is the "init": the chain stops here
  CHECK(c.exe_chain[0] == self_exe());
  auto pins = id.pins();
  REQUIRE(pins.count(self_exe()) == 1);
  CHECK(pins[self_exe()] == sha256_file(self_exe()));

  // The accepted socket's own end is not a client of the proxy: its reverse is not in the table.
  // (The kernel's exact lookup falls back to the listener on that address and port: not taken.)
  Caller none = id.identify(accepted.local_endpoint(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 9));
  CHECK(none.exe_chain.empty());
  CHECK(none.error.find("no socket from 127.0.0.1:" + std::to_string(server.local_endpoint().port()) +
                        " to 127.0.0.1:9 in the TCP table of the agent's network namespace") == 0);

  CHECK_THROWS_AS(BinaryIdentifier(0), bulwark::Error);
}

TEST_CASE("the real /proc: a socket held by two processes is refused, whichever sends") {
  asio::io_context io;
  tcp::acceptor server(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(io);
  client.connect(server.local_endpoint());
  tcp::socket accepted = accept_one(server);
  pid_t child = ::fork();  // inherits the client socket: now two processes could send on it
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  REQUIRE(child > 0);
  BinaryIdentifier id(::getpid());
  Caller c = id.identify(accepted.remote_endpoint(), accepted.local_endpoint());
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  CHECK(c.exe_chain.empty());
  CHECK_MESSAGE(c.error.find("is held by several processes (") != std::string::npos, c.error);
  CHECK_MESSAGE(c.error.find(std::to_string(child)) != std::string::npos, c.error);
  // With the child gone, the same connection is this process's alone again.
  Caller alone = id.identify(accepted.remote_endpoint(), accepted.local_endpoint());
  CHECK_MESSAGE(alone.error.empty(), alone.error);
}

TEST_CASE("the real /proc: a child's chain stops below init; a binary changed at its path is refused") {
  if (!fs::exists("/usr/bin/curl")) FAIL("curl is not installed: install curl (scripts/install-deps does)");
  fs::path dir = fs::temp_directory_path() / ("bulwark-pin-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path copy = dir / "curl";
  fs::copy_file("/usr/bin/curl", copy, fs::copy_options::overwrite_existing);

  asio::io_context io;
  tcp::acceptor server(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  std::string url = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port()) + "/";
  BinaryIdentifier id(::getpid());
  auto run_once = [&] {
    auto p = bulwark::Process::spawn({.argv = {copy.string(), "-s", "--max-time", "5", url}, .pipe_stdout = true});
    tcp::socket s = accept_one(server);
    Caller c = id.identify(s.remote_endpoint(), s.local_endpoint());
    s.close();
    p.wait();  // curl ends when its connection does; only then may its file be rewritten
    return c;
  };

  Caller first = run_once();
  REQUIRE_MESSAGE(first.error.empty(), first.error);
  // Init (this test) is the supervisor's code in a sandbox: not part of the agent's chain.
  REQUIRE(first.exe_chain.size() == 1);
  CHECK(first.exe_chain[0] == copy.string());
  CHECK(id.pins().count(self_exe()) == 0);
  CHECK(first.pid != ::getpid());

  Caller again = run_once();  // unchanged: same pin
  CHECK(again.error.empty());

  // Same path, other content (trailing bytes do not stop an ELF from running).
  std::ofstream(copy, std::ios::app | std::ios::binary) << "changed";
  Caller changed = run_once();
  CHECK(changed.changed);
  CHECK(changed.error.rfind("binary changed since first use: " + copy.string() + " (sha256 pinned ", 0) == 0);
  CHECK(changed.exe_chain[0] == copy.string());
  fs::remove_all(dir);
}

TEST_CASE("sock_diag on the real kernel: the client's inode, over IPv4, IPv6 and IPv4-mapped") {
  auto diag = SockDiag::open("/proc/self/ns/net");
  asio::io_context io;
  auto check_pair = [&](std::string listen_at, std::string connect_to, bool v6only) {
    CAPTURE(listen_at);
    CAPTURE(connect_to);
    tcp::acceptor server(io);
    tcp::endpoint at(asio::ip::make_address(listen_at), 0);
    server.open(at.protocol());
    if (at.address().is_v6()) server.set_option(asio::ip::v6_only(v6only));
    server.bind(at);
    server.listen();
    tcp::socket client(io);
    client.connect(tcp::endpoint(asio::ip::make_address(connect_to), server.local_endpoint().port()));
    tcp::socket accepted = accept_one(server);
    std::string error;
    const tcp::endpoint peer = accepted.remote_endpoint(), local = accepted.local_endpoint();
    auto inode = diag->inode_of(peer, local, &error);
    REQUIRE_MESSAGE(inode, error);
    CHECK(*inode == inode_of_fd(client.native_handle()));
    // Reversed, the pair names the accepted socket itself (the proxy's end), not the client.
    CHECK(diag->inode_of(local, peer, &error) == inode_of_fd(accepted.native_handle()));
    client.close();  // closed: its pair is gone or in TIME_WAIT, no inode either way
    accepted.close();
    CHECK_FALSE(diag->inode_of(peer, local, &error));
    CHECK(error.empty());
  };
  check_pair("127.0.0.1", "127.0.0.1", false);
  if (!have_ipv6()) {
    MESSAGE("IPv6 is off in this kernel: IPv6 lookups not tested");
    return;
  }
  check_pair("::1", "::1", true);
  check_pair("::", "127.0.0.1", false);  // accepted as ::ffff:127.0.0.1, the client is AF_INET
  check_pair("127.0.0.1", "::ffff:127.0.0.1", false);  // an AF_INET6 client: the reply is AF_INET6
}

TEST_CASE("sock_diag in the agent's network namespace: entered from a short-lived thread") {
  if (::geteuid() != 0) {
    MESSAGE("not root: creating and entering a network namespace is not tested");
    return;
  }
  NetnsThread agent;
  REQUIRE_MESSAGE(agent.error.empty(), agent.error);
  const tcp::endpoint peer = agent.endpoint(true), local = agent.endpoint(false);

  std::string error;
  auto diag = SockDiag::open("/proc/" + std::to_string(agent.tid) + "/ns/net");
  CHECK(diag->inode_of(peer, local, &error) == inode_of_fd(agent.client.get()));

  // The thread's /proc/<tid> as init: the whole identification runs in its namespace.
  BinaryIdentifier id(agent.tid);
  Caller c = id.identify(peer, local);
  REQUIRE_MESSAGE(c.error.empty(), c.error);
  CHECK(id.uses_sock_diag());
  CHECK(c.pid == agent.tid);
  CHECK(c.exe_chain == std::vector<std::string>{self_exe()});

  // The same pair is not in this process's namespace.
  BinaryIdentifier host(::getpid());
  Caller none = host.identify(peer, local);
  CHECK(none.error.find("no socket from " + peer.address().to_string() + ":" + std::to_string(peer.port())) == 0);
  // The caller's namespace is unchanged: setns happened in a thread that is gone.
  struct stat self_ns {}, agent_ns {};
  REQUIRE(::stat("/proc/thread-self/ns/net", &self_ns) == 0);
  REQUIRE(::stat(("/proc/" + std::to_string(agent.tid) + "/ns/net").c_str(), &agent_ns) == 0);
  CHECK(self_ns.st_ino != agent_ns.st_ino);
}

TEST_CASE("no sock_diag socket (no ns/net to enter): the caller is found in /proc/<init>/net/tcp instead") {
  // A procfs look-alike without ns/: the rest links to the real entries.
  pid_t me = ::getpid();
  fs::path proc = fs::temp_directory_path() / ("bulwark-proc-" + std::to_string(me));
  fs::remove_all(proc);
  fs::path self = proc / std::to_string(me);
  fs::create_directories(self);
  for (const char* e : {"net", "fd", "status"})
    fs::create_directory_symlink("/proc/" + std::to_string(me) + "/" + e, self / e);
  fs::create_symlink(self_exe(), self / "exe");

  asio::io_context io;
  tcp::acceptor server(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(io);
  client.connect(server.local_endpoint());
  tcp::socket accepted = accept_one(server);

  BinaryIdentifier id(me, proc.string());
  CHECK_FALSE(id.uses_sock_diag());
  Caller c = id.identify(accepted.remote_endpoint(), accepted.local_endpoint());
  REQUIRE_MESSAGE(c.error.empty(), c.error);
  CHECK(c.pid == me);
  CHECK(c.exe_chain == std::vector<std::string>{self_exe()});
  Caller none = id.identify(accepted.local_endpoint(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 9));
  CHECK(none.error.find("/net/tcp): the connection does not come from the sandbox") != std::string::npos);
  fs::remove_all(proc);
}
