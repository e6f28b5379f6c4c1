#include "shared/flags.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>

#include "shared/util.h"

namespace bulwark {

namespace {
std::string env_name(const std::string& name) {
  std::string e = "BULWARK_";
  for (char c : name) e += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return e;
}
}  // namespace

Flags::Flags(const std::string& program, const std::string& description)
    : app_(std::make_unique<CLI::App>(description, program)) {
  app_->set_version_flag("--version", std::string(kVersion));
}
Flags::~Flags() = default;

Flags& Flags::text(const std::string& name, std::string* v, const std::string& help) {
  app_->add_option("--" + name, *v, help)->envname(env_name(name))->capture_default_str();
  return *this;
}
Flags& Flags::choice(const std::string& name, std::string* v, const std::string& help,
                     const std::vector<std::string>& allowed) {
  app_->add_option("--" + name, *v, help)->envname(env_name(name))->check(CLI::IsMember(allowed))->capture_default_str();
  return *this;
}
Flags& Flags::integer(const std::string& name, int* v, const std::string& help, int min, int max) {
  app_->add_option("--" + name, *v, help)->envname(env_name(name))->check(CLI::Range(min, max))->capture_default_str();
  return *this;
}
Flags& Flags::count(const std::string& name, uint32_t* v, const std::string& help, uint32_t min, uint32_t max) {
  app_->add_option("--" + name, *v, help)->envname(env_name(name))->check(CLI::Range(min, max))->capture_default_str();
  return *this;
}
Flags& Flags::seconds(const std::string& name, double* v, const std::string& help, double min, double max) {
  app_->add_option("--" + name, *v, help + " (seconds)")->envname(env_name(name))->check(CLI::Range(min, max))->capture_default_str();
  return *this;
}
Flags& Flags::list(const std::string& name, std::vector<std::string>* v, const std::string& help) {
  app_->add_option("--" + name, *v, help)->envname(env_name(name))->delimiter(',')->take_all();
  return *this;
}
Flags& Flags::rest(const std::string& name, std::vector<std::string>* v, const std::string& help, bool required) {
  auto* o = app_->add_option(name, *v, help);
  if (required) o->required();
  return *this;
}

int Flags::parse(int argc, char** argv) {
  try {
    app_->parse(argc, argv);
    return -1;
  } catch (const CLI::ParseError& e) {
    return app_->exit(e) == 0 ? 0 : 2;  // --help/--version, or a usage error (CLI11 has many codes)
  }
}

}  // namespace bulwark
