#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/error.h"
#include "supervisor/exec_control.h"

using namespace bulwark;
using namespace bulwark::supervisor;

TEST_CASE("a spawn request survives encoding, empty fields and '=' included") {
  SpawnRequest r{42, true, "", {"sh", "-c", "echo a=b", ""}, {"A=1", "EMPTY="}};
  auto back = decode_spawn(split_fields(encode_spawn(r)));
  CHECK(back.id == 42);
  CHECK(back.tty);
  CHECK(back.workdir.empty());
  CHECK(back.argv == r.argv);
  CHECK(back.env == r.env);
}

TEST_CASE("malformed control packets are refused, never half-read") {
  CHECK_THROWS_AS(split_fields(std::string("spawn")), Error);  // no trailing NUL
  CHECK_THROWS_AS(decode_spawn(split_fields(join_fields({"spawn", "1", "0", "/"}))), Error);
  CHECK_THROWS_AS(decode_spawn(split_fields(join_fields({"spawn", "x", "0", "/", "1", "sh"}))), Error);
  CHECK_THROWS_AS(decode_spawn(split_fields(join_fields({"spawn", "1", "0", "/", "3", "sh"}))), Error);  // argc past the end
  CHECK_THROWS_AS(decode_spawn(split_fields(join_fields({"spawn", "1", "0", "/", "0"}))), Error);        // no command
  CHECK_THROWS_AS(encode_spawn(SpawnRequest{1, false, "", {std::string("a\0b", 3)}, {}}), Error);
  CHECK_THROWS_AS(encode_spawn(SpawnRequest{1, false, "", {std::string(kMaxControlMessage, 'x')}, {}}), Error);
}

TEST_CASE("the request's environment wins over the agent's, name by name") {
  auto env = merge_env({"PATH=/bin", "HOME=/sandbox", "PATHX=1"}, {"PATH=/usr/bin", "NEW=2"});
  CHECK(env == std::vector<std::string>{"HOME=/sandbox", "PATHX=1", "PATH=/usr/bin", "NEW=2"});
}

TEST_CASE("packets carry their fds across a seqpacket pair, one packet per call") {
  int sp[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0);
  Fd a(sp[0]), b(sp[1]);
  int p[2];
  REQUIRE(::pipe(p) == 0);
  Fd r(p[0]), w(p[1]);
  send_packet(a.get(), join_fields({"one"}), {w.get()});
  send_packet(a.get(), join_fields({"two", "x"}));
  std::vector<Fd> fds;
  CHECK(split_fields(recv_packet(b.get(), &fds)) == std::vector<std::string>{"one"});
  REQUIRE(fds.size() == 1);
  w.reset();
  REQUIRE(::write(fds[0].get(), "z", 1) == 1);  // the received fd is the pipe's write end
  char c = 0;
  CHECK(::read(r.get(), &c, 1) == 1);
  CHECK(c == 'z');
  CHECK(split_fields(recv_packet(b.get())) == std::vector<std::string>{"two", "x"});
  a.reset();
  CHECK(recv_packet(b.get()).empty());
}
