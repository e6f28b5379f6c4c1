// The main() of every unit test. It ignores SIGPIPE as every Bulwark binary does (shared/service.cpp,
// supervisor/main.cpp, cli/main.cpp): tests drive the same socket and TLS code without those
// main()s, and OpenSSL writes with plain write(), so a peer that hangs up first would otherwise
// kill the whole test binary with SIGPIPE instead of failing one check.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <csignal>

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  return doctest::Context(argc, argv).run();
}
