#pragma once
// Flags for Bulwark's daemons: every flag --name also reads BULWARK_NAME from the environment.
// CLI11 does the work, but only flags.cpp includes it: its header costs ~10 s of compile time per
// file, too much to pay in every service.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace bulwark {

class Flags {
 public:
  Flags(const std::string& program, const std::string& description);
  ~Flags();
  // name without dashes, e.g. "nats-url" -> --nats-url and BULWARK_NATS_URL.
  Flags& text(const std::string& name, std::string* v, const std::string& help);
  Flags& choice(const std::string& name, std::string* v, const std::string& help, const std::vector<std::string>& allowed);
  Flags& integer(const std::string& name, int* v, const std::string& help, int min, int max);
  Flags& count(const std::string& name, uint32_t* v, const std::string& help, uint32_t min, uint32_t max);
  Flags& seconds(const std::string& name, double* v, const std::string& help, double min, double max);
  // Repeatable (--name a --name b); the environment variable holds a comma-separated list.
  Flags& list(const std::string& name, std::vector<std::string>* v, const std::string& help);
  // Everything after "--" (and other positional words).
  Flags& rest(const std::string& name, std::vector<std::string>* v, const std::string& help, bool required);
  // Returns -1 to go on, or the exit code to return (0 after --help/--version, 2 for bad flags).
  int parse(int argc, char** argv);

 private:
  std::unique_ptr<CLI::App> app_;
};

}  // namespace bulwark
