#pragma once
// Agent presets (deploy/presets/<agent>.yaml): what `bulwark sandbox create --agent NAME` applies —
// image, command, environment, the sandbox policy, and the providers the agent needs. Pure: files
// are read by load_*, everything else takes text, JSON and the environment as parameters, so the
// CLI's decisions (which provider to attach or create, which route table to set) are unit-tested.
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace bulwark::cli {

// A provider an agent uses. Inference types (anthropic, openai, ...) are reached through
// inference.local; the others (github, generic) become the agent's environment variables.
struct ProviderNeed {
  std::string type;                   // a shared/providers.h type
  std::string name;                   // the name the CLI gives one it creates (default: type)
  std::vector<std::string> env_vars;  // variables to discover it from (default: the type's)
  std::string base_url_env;           // a variable whose value becomes the created provider's base_url
  bool required = false;              // the agent cannot work without it (a warning when missing)
};

struct AgentPreset {
  std::string name, description, image;
  std::vector<std::string> command;          // the default agent command
  std::vector<std::string> version_command;  // prints the CLI's version (docs, tests)
  std::map<std::string, std::string> env;    // the agent's environment (placeholders, never secrets)
  std::vector<ProviderNeed> providers;
  std::vector<std::string> denied_hosts;     // hosts the CLI would call that the policy must refuse
  std::string policy_yaml;                   // the `policy:` section as YAML text, as POST /v1/sandboxes takes it
  std::string file;                          // where it was read from
};

// Parses and checks a preset: unknown keys are refused (a typo must not silently drop a rule), and
// the policy is checked with the supervisor's own parser (policy::parse_policy). Throws
// bulwark::Error(kInvalidArgument) naming file and field, or policy::PolicyInvalid.
AgentPreset parse_agent_preset(const std::string& yaml_text, const std::string& file);

// Where presets are looked for, in order: $BULWARK_PRESETS_DIR, <exe_dir>/presets,
// <exe_dir>/../share/bulwark/presets, then the source tree's deploy/presets (a development build).
std::vector<std::string> preset_dirs(const std::map<std::string, std::string>& env, const std::string& exe_dir);
// Every *.yaml of the first of `dirs` that exists, sorted by name. Throws CliError(kUsage) when
// none exists, naming the places looked at and BULWARK_PRESETS_DIR.
std::vector<AgentPreset> load_presets(const std::vector<std::string>& dirs);
// The preset NAME; CliError(kUsage) listing the known ones when there is none.
AgentPreset load_preset(const std::string& name, const std::vector<std::string>& dirs);

// The create request with the preset applied: what the user gave (--image, --policy, a command
// after --, -e KEY=...) wins; the preset fills the rest, and labels the sandbox agent=NAME.
void apply_preset(const AgentPreset& p, nlohmann::json& spec);

// One provider to attach to the new sandbox, and whether the CLI must create it first.
struct ProviderAction {
  std::string name;
  std::string type;
  bool inference = false;
  bool create = false;
  nlohmann::json body;   // POST /v1/providers when create
  std::string from;      // for the confirmation line: "from ANTHROPIC_API_KEY" or "existing"
};
struct ProviderPlan {
  std::vector<ProviderAction> attach;
  std::vector<std::string> warnings;  // required providers found nowhere, saying what to do
};

// For each provider the preset needs (unless `explicit_names` already attaches one of its type):
// an existing provider of that type (the one named like the need first), else one created from the
// CLI's environment (credentials from the need's variables, base_url from base_url_env), else a
// warning when it is required. `existing`: GET /v1/providers' entries (masked: only name and type
// are used). Never puts a credential anywhere but the create body.
ProviderPlan plan_providers(const AgentPreset& p, const std::vector<nlohmann::json>& existing,
                            const std::vector<std::string>& explicit_names, const std::map<std::string, std::string>& env);

// "attached provider anthropic (from ANTHROPIC_API_KEY)"
std::string attach_line(const ProviderAction& a);

// The sandbox's own route table sending every model to the attached inference providers (a request
// uses the one that speaks its API style), or nullopt when there is none to route to or the
// operator has a global table (which then decides).
std::optional<nlohmann::json> sandbox_routes(const ProviderPlan& plan, bool global_table_exists);

// NAME, IMAGE, COMMAND, PROVIDERS, DESCRIPTION.
std::string preset_table(const std::vector<AgentPreset>& presets);

}  // namespace bulwark::cli
