#include "cli/examples.h"

#include <map>

namespace bulwark::cli {

namespace {
const std::map<std::string, std::string>& table() {
  static const std::map<std::string, std::string> t = {
      {"sandbox", "Examples:\n  bulwark sandbox create --name demo -- echo hi\n  bulwark sb ls --watch"},
      {"sandbox get", "Examples:\n  bulwark sandbox get demo\n  bulwark sandbox get demo --watch -o yaml"},
      {"sandbox delete", "Example: bulwark sandbox delete demo --wait"},
      {"sandbox start", "Example: bulwark sandbox start demo --timeout 60"},
      {"sandbox logs", "Examples:\n  bulwark sandbox logs demo --tail 50\n  bulwark sandbox logs demo --denials"},
      {"sandbox events", "Example: bulwark sandbox events demo"},
      {"logs", "Examples:\n  bulwark logs demo --tail 50\n  bulwark logs demo --inference -o json"},
      {"token", "Examples:\n  bulwark token create --name ci --scope ci --expires 24h\n  bulwark token list"},
      {"token list", "Example: bulwark token list -o json"},
      {"token revoke", "Example: bulwark token revoke 3f2a9c1d"},
      {"gateway", "Examples:\n  bulwark gateway start\n  bulwark gateway add https://gw.example.com --name prod --token-stdin\n"
                  "  bulwark gateway select prod"},
      {"health", "Example: bulwark health --gateway http://10.0.0.5:8080"},
      {"policy", "Examples:\n  bulwark policy validate policy.yaml\n  bulwark policy update demo --add-endpoint api.github.com:443 --wait"},
      {"policy get", "Examples:\n  bulwark policy get demo\n  bulwark policy get demo --rev 2 -o json"},
      {"policy list", "Example: bulwark policy list demo"},
      {"policy pending", "Examples:\n  bulwark policy pending demo\n  bulwark policy pending demo --all -o json"},
      {"policy approve", "Example: bulwark policy approve demo 3 --reason 'the agent needs PyPI'"},
      {"policy reject", "Example: bulwark policy reject demo 3"},
      {"provider", "Examples:\n  bulwark provider create --name claude --type anthropic --from-env\n  bulwark provider ls"},
      {"provider list", "Example: bulwark provider list -o json"},
      {"provider get", "Example: bulwark provider get claude"},
      {"provider delete", "Example: bulwark provider delete claude"},
      {"inference", "Examples:\n  bulwark inference set --provider claude --model claude-sonnet-4-5\n  bulwark inference get -o yaml"},
      {"inference get", "Examples:\n  bulwark inference get\n  bulwark inference get --sandbox demo -o yaml > routes.yaml"},
      {"inference delete", "Example: bulwark inference delete --sandbox demo"},
      {"completion", "Examples:\n  source <(bulwark completion bash)\n  bulwark completion zsh > \"${fpath[1]}/_bulwark\"\n"
                     "  bulwark completion fish > ~/.config/fish/completions/bulwark.fish"},
  };
  return t;
}

void walk(CLI::App& app, const std::string& path, const std::string& root_footer) {
  std::string footer = app.get_footer();
  // CLI11 copies the root's footer into every subcommand: that one is not the command's own.
  if (!path.empty() && footer == root_footer) {
    footer.clear();
    app.footer("");
  }
  if (!path.empty() && footer.find("Example") == std::string::npos) {
    std::string ex = examples_for(path);
    if (!ex.empty()) app.footer(footer.empty() ? ex : footer + "\n" + ex);
  }
  for (CLI::App* s : app.get_subcommands([](CLI::App*) { return true; }))
    walk(*s, path.empty() ? s->get_name() : path + " " + s->get_name(), root_footer);
}
}  // namespace

std::string examples_for(const std::string& path) {
  auto it = table().find(path);
  return it == table().end() ? "" : it->second;
}

void add_examples(CLI::App& app) { walk(app, "", app.get_footer()); }

}  // namespace bulwark::cli
