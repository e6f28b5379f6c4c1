#include <doctest/doctest.h>
#include <unistd.h>

#include <csignal>

#include "shared/error.h"
#include "shared/process.h"

using namespace bulwark;

TEST_CASE("a child's exit code and output come back") {
  auto p = Process::spawn({.argv = {"sh", "-c", "echo out; exit 3"}, .pipe_stdout = true});
  char buf[16] = {0};
  REQUIRE(::read(p.stdout_fd(), buf, sizeof buf - 1) > 0);
  CHECK(std::string(buf) == "out\n");
  CHECK(p.wait() == 3);
}

TEST_CASE("a command that cannot run is an error at spawn, not exit 127") {
  CHECK_THROWS_AS(Process::spawn({.argv = {"/no/such/binary"}}), Error);
}

TEST_CASE("a signal death reads as 128 + signal, and the destructor stops a running child") {
  auto p = Process::spawn({.argv = {"sleep", "30"}});
  p.signal(SIGKILL);
  CHECK(p.wait() == 128 + SIGKILL);
  pid_t pid;
  {
    auto q = Process::spawn({.argv = {"sleep", "30"}});
    pid = q.pid();
  }
  CHECK(::kill(pid, 0) != 0);  // reaped: no such process
}

TEST_CASE("environment is replaced when given") {
  auto p = Process::spawn({.argv = {"sh", "-c", "test \"$ONLY\" = yes && test -z \"$HOME\""},
                           .env = std::vector<std::string>{"ONLY=yes", "PATH=/usr/bin:/bin"}});
  CHECK(p.wait() == 0);
}
