#pragma once
// Shell completion scripts for bash, zsh and fish, generated from the CLI11 app tree itself, so a
// command or option added to the CLI is completed without touching this file.
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace bulwark::cli {

// One command of the tree: its path from the root ({} for the root, {"sandbox", "create"}), the
// names it answers to (name first, then aliases) and its options as typed ("--name", "-o").
struct CommandInfo {
  std::vector<std::string> path;
  std::vector<std::string> names;
  std::string description;
  std::vector<std::string> options;
  std::vector<std::string> option_help;  // beside options
  std::vector<const CLI::App*> children;
};

// Every command, root first, depth-first in declaration order. Hidden ones (no group) are left out.
std::vector<CommandInfo> command_tree(const CLI::App& app);

// The script for shell "bash", "zsh" or "fish"; throws CliError(kUsage) for another shell.
std::string completion_script(const CLI::App& app, const std::string& shell, const std::string& program = "bulwark");

}  // namespace bulwark::cli
