// The bulwark CLI as a user runs it, against the real suite.
#include <doctest/doctest.h>

#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;

namespace {
struct Run {
  int code;
  std::string out;
};
Run bulwark_cli(const std::vector<std::string>& args, const std::string& gateway) {
  std::vector<std::string> argv = {bin("bulwark"), "--gateway", gateway};
  argv.insert(argv.end(), args.begin(), args.end());
  auto p = Process::spawn({.argv = argv, .pipe_stdout = true});
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p.stdout_fd(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return {p.wait(), out};
}
}  // namespace

TEST_CASE("bulwark sandbox create -- echo hi prints the sandbox and its output") {
  Suite suite;
  auto r = bulwark_cli({"sandbox", "create", "--name", "cli-demo", "--", "echo", "hi"}, suite.gateway_url());
  CHECK(r.code == 0);
  CHECK_MESSAGE(r.out.find("cli-demo") != std::string::npos, r.out);
  CHECK_MESSAGE(r.out.find("EXITED") != std::string::npos, r.out);
  CHECK_MESSAGE(r.out.find("\nhi\n") != std::string::npos, r.out);

  auto list = bulwark_cli({"sandbox", "list", "-o", "json"}, suite.gateway_url());
  CHECK(list.code == 0);
  CHECK(nlohmann::json::parse(list.out)["sandboxes"][0]["name"] == "cli-demo");

  auto del = bulwark_cli({"sandbox", "delete", "cli-demo", "--wait"}, suite.gateway_url());
  CHECK(del.code == 0);
  CHECK(del.out.find("DELETED") != std::string::npos);
}

TEST_CASE("the CLI's exit codes say what went wrong") {
  Suite suite;
  CHECK(bulwark_cli({"sandbox", "get", "missing"}, suite.gateway_url()).code == 3);
  CHECK(bulwark_cli({"sandbox", "create", "--name", "Bad Name", "--", "true"}, suite.gateway_url()).code == 1);
  CHECK(bulwark_cli({"sandbox", "create", "--env", "NOEQUALS", "--", "true"}, suite.gateway_url()).code == 2);
  CHECK(bulwark_cli({"sandbox", "frobnicate"}, suite.gateway_url()).code == 2);
  CHECK(bulwark_cli({"sandbox", "create", "--driver", "lxc", "--", "true"}, suite.gateway_url()).code == 2);
  CHECK(bulwark_cli({"sandbox", "list"}, "http://127.0.0.1:" + std::to_string(free_port())).code == 4);
  CHECK(bulwark_cli({"sandbox", "create", "--image", "localhost/no-such-image:1", "--", "true"}, suite.gateway_url()).code == 5);
}
