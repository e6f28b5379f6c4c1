// The CLI's help and completions, checked against the real binary: the command tree is read from
// `--help` itself (not from the code that writes completions), every command's help shows an
// example, and every command is in the bash, zsh and fish completions.
#include <doctest/doctest.h>
#include <poll.h>
#include <unistd.h>

#include <sstream>

#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;

namespace {
std::pair<int, std::string> run(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {bin("bulwark")};
  argv.insert(argv.end(), args.begin(), args.end());
  auto p = Process::spawn({.argv = argv, .pipe_stdout = true});
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(p.stdout_fd(), buf, sizeof buf);
    if (n > 0) out.append(buf, static_cast<size_t>(n));
    else if (n == 0 || errno != EINTR) break;
  }
  return {p.wait(), out};
}

// The subcommand names a help text lists, under its "Subcommands:" heading.
std::vector<std::string> subcommands_in(const std::string& help) {
  std::vector<std::string> out;
  std::istringstream in(help);
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (line == "Subcommands:" || line == "SUBCOMMANDS:") {
      inside = true;
    } else if (inside) {
      if (line.empty() || line[0] != ' ') break;
      std::istringstream words(line);
      std::string name;
      words >> name;  // "sandbox, sb": the name, then its aliases
      if (!name.empty() && name.back() == ',') name.pop_back();
      out.push_back(name);
    }
  }
  return out;
}

void walk(const std::vector<std::string>& path, std::vector<std::vector<std::string>>& all) {
  auto args = path;
  args.push_back("--help");
  auto [code, help] = run(args);
  std::string where = "bulwark";
  for (const auto& p : path) where += " " + p;
  CHECK_MESSAGE(code == 0, where);
  // An example of this very command (not the root's, which CLI11 would otherwise show everywhere).
  CHECK_MESSAGE((help.find("Example") != std::string::npos && (path.empty() || help.find(where) != std::string::npos)),
                where << " --help shows no example of it:\n" << help);
  all.push_back(path);
  REQUIRE_MESSAGE(path.size() < 4, where << ": deeper than any command: the help was not parsed right");
  for (const auto& s : subcommands_in(help)) {
    auto child = path;
    child.push_back(s);
    walk(child, all);
  }
}
}  // namespace

TEST_CASE("every command's --help has an example, and every command is in every shell's completions") {
  std::vector<std::vector<std::string>> all;
  walk({}, all);
  // The groups people expect (OpenShell's) are all there.
  for (const char* g : {"sandbox", "policy", "provider", "inference", "gateway", "token", "logs", "status", "completion"}) {
    bool found = false;
    for (const auto& p : all) found = found || (p.size() == 1 && p[0] == g);
    CHECK_MESSAGE(found, "no top-level command " << g);
  }
  CHECK(all.size() > 40);
  for (const char* shell : {"bash", "zsh", "fish"}) {
    auto [code, script] = run({"completion", shell});
    REQUIRE(code == 0);
    for (const auto& p : all) {
      if (p.empty()) continue;
      // The command's own key in the script: bash and zsh key on the path, fish on the parent's names.
      std::string key;
      for (const auto& x : p) key += "/" + x;
      bool in = std::string(shell) == "fish" ? script.find("-a '" + p.back()) != std::string::npos
                                             : script.find("\"" + key + "\")") != std::string::npos;
      CHECK_MESSAGE(in, shell << " completion lacks " << key);
    }
  }
  CHECK(run({"completion", "tcsh"}).first == 2);
}
