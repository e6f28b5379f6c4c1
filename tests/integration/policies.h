#pragma once
// Policies and helpers shared by the tests that check policy errors end to end.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

namespace bulwark::testing {

// Three problems: a relative path, root as the agent's user, and a key OpenShell does not have.
inline const std::string kBadPolicy =
    "version: 1\n"
    "filesystem_policy:\n"
    "  read_only: [/bin, /etc]\n"
    "  read_write: [/tmp, relative/path]\n"
    "process:\n"
    "  run_as_user: root\n"
    "colour: blue\n";

// What busybox sh and echo need, and nothing more.
inline const std::string kGoodPolicy =
    "version: 1\n"
    "filesystem_policy:\n"
    "  read_only: [/bin, /etc, /proc, /dev/urandom]\n"
    "  read_write: [/tmp, /dev/null, /sandbox]\n";

// "LINE:COL" (1-based) of the first occurrence of needle in text.
inline std::string position_of(const std::string& text, const std::string& needle) {
  size_t at = text.find(needle);
  REQUIRE_MESSAGE(at != std::string::npos, needle);
  size_t line_start = text.rfind('\n', at);
  line_start = line_start == std::string::npos ? 0 : line_start + 1;
  auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n');
  return std::to_string(line) + ":" + std::to_string(at - line_start + 1);
}

}  // namespace bulwark::testing
