#include "cli/completion.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>

#include "cli/client.h"
#include "shared/process.h"
#include "shared/util.h"

using namespace bulwark::cli;

namespace {
// A small tree shaped like bulwark's: groups with aliases, repeated leaf names, global options.
struct Sample {
  CLI::App app{"sample"};
  std::string gw, name;
  bool flag = false;
  Sample() {
    app.add_option("--gateway", gw, "gateway URL");
    auto* sb = app.add_subcommand("sandbox", "sandboxes")->alias("sb");
    auto* create = sb->add_subcommand("create", "make one");
    create->add_option("--name", name, "its name");
    create->add_flag("-t,--tty", flag, "a terminal");
    sb->add_subcommand("list", "list them")->alias("ls");
    auto* prov = app.add_subcommand("provider", "providers: 'quoted'");
    prov->add_subcommand("list", "list providers");
    app.add_subcommand("status", "status: the gateway's");
  }
};

// Runs the bash script's function on `line` (words split on spaces; the last is being completed).
std::string bash_complete(const std::string& script, const std::string& line) {
  bulwark::TempDir tmp;
  std::string file = tmp.file("c.bash");
  std::ofstream(file) << script;
  std::string cmd = "source " + file + "; COMP_WORDS=(" + line + "); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); " +
                    "[[ \"" + line + "\" == *' ' ]] && COMP_WORDS+=('') && COMP_CWORD=$((COMP_CWORD + 1)); _sample; echo \"${COMPREPLY[*]}\"";
  auto p = bulwark::Process::spawn({.argv = {"bash", "-c", cmd}, .pipe_stdout = true});
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p.stdout_fd(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  CHECK(p.wait() == 0);
  return out;
}
}  // namespace

TEST_CASE("command_tree lists every command with its aliases and options") {
  Sample s;
  auto tree = command_tree(s.app);
  std::vector<std::string> paths;
  for (const auto& c : tree) {
    std::string p;
    for (const auto& x : c.path) p += (p.empty() ? "" : " ") + x;
    paths.push_back(p);
  }
  CHECK(paths == std::vector<std::string>{"", "sandbox", "sandbox create", "sandbox list", "provider", "provider list", "status"});
  CHECK(tree[1].names == std::vector<std::string>{"sandbox", "sb"});
  CHECK(std::find(tree[2].options.begin(), tree[2].options.end(), "--name") != tree[2].options.end());
  CHECK(std::find(tree[2].options.begin(), tree[2].options.end(), "-t") != tree[2].options.end());
}

TEST_CASE("every command and alias appears in the bash, zsh and fish scripts") {
  Sample s;
  for (const char* shell : {"bash", "zsh", "fish"}) {
    std::string script = completion_script(s.app, shell, "sample");
    for (std::string word : {"sandbox", "sb", "create", "list", "ls", "provider", "status", "--gateway", "--name"}) {
      if (std::string(shell) == "fish" && word.rfind("--", 0) == 0) word = "-l " + word.substr(2);  // fish's spelling
      CHECK_MESSAGE(script.find(word) != std::string::npos, std::string(shell) << " lacks " << word);
    }
  }
  CHECK(completion_script(s.app, "fish", "sample").find("providers: \\'quoted\\'") != std::string::npos);
  CHECK(completion_script(s.app, "zsh", "sample").find("'status:status\\: the gateway'\\''s'") != std::string::npos);
  try {
    completion_script(s.app, "tcsh");
    FAIL("tcsh accepted");
  } catch (const CliError& e) {
    CHECK(e.exit_code == kUsage);
  }
}

TEST_CASE("the bash script completes in real bash: subcommands by path, aliases, options") {
  Sample s;
  std::string script = completion_script(s.app, "bash", "sample");
  CHECK(bash_complete(script, "sample ") == "sandbox sb provider status --help -h --gateway\n");
  CHECK(bash_complete(script, "sample sa") == "sandbox\n");
  CHECK(bash_complete(script, "sample sb ") == "create list ls --help -h --gateway\n");
  CHECK(bash_complete(script, "sample --gateway http://x sandbox create --") == "--help --name --tty --gateway\n");
  CHECK(bash_complete(script, "sample provider ") == "list --help -h --gateway\n");  // not sandbox's ls
  CHECK(bash_complete(script, "sample sandbox create -- ") == "\n");               // the sandbox's own command
}
