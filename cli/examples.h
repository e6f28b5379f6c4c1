#pragma once
// `--help` shows examples on every command: commands whose footer has none get theirs from one
// table here, keyed by the command's path, so the examples sit in one place and a test
// (tests/integration/help_test.cpp) can walk the whole tree to check none is missing.
#include <CLI/CLI.hpp>

#include <string>

namespace bulwark::cli {

// The examples for a command path ("sandbox get"), "" when the table has none.
std::string examples_for(const std::string& path);
// Appends examples_for(path) to the footer of every command whose own footer lacks "Example" (the
// root's footer, which CLI11 copies into every subcommand, does not count).
void add_examples(CLI::App& app);

}  // namespace bulwark::cli
