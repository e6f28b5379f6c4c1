// Caller identification: the /proc parsers on fixed text, then the real /proc with this test
// process as the "agent's init" (its network namespace and descendants are ours).
#include "supervisor/proxy/binary_identity.h"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <poll.h>
#include <unistd.h>

#include <asio.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

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

}  // namespace

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
  CHECK(c.pid == ::getpid());
  REQUIRE(c.exe_chain.size() == 1);  // this process is the "init": the chain stops here
  CHECK(c.exe_chain[0] == self_exe());
  auto pins = id.pins();
  REQUIRE(pins.count(self_exe()) == 1);
  CHECK(pins[self_exe()] == sha256_file(self_exe()));

  // The accepted socket's own end is not a client of the proxy: its reverse is not in the table.
  Caller none = id.identify(accepted.local_endpoint(), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 9));
  CHECK(none.exe_chain.empty());
  CHECK(none.error.find("no socket from 127.0.0.1:" + std::to_string(server.local_endpoint().port()) +
                        " to 127.0.0.1:9 in the TCP table of the agent's network namespace") == 0);

  CHECK_THROWS_AS(BinaryIdentifier(0), bulwark::Error);
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
