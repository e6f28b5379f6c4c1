#include "shared/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdio>

#include "shared/error.h"

namespace bulwark {
namespace {

// %v escaped as a JSON string body, so a message with quotes or newlines stays one valid object.
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string s = json_escape(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(s.data(), s.data() + s.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return spdlog::details::make_unique<JsonMessageFlag>();
  }
};

}  // namespace

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

std::unique_ptr<spdlog::formatter> json_log_formatter() {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<JsonMessageFlag>('*').set_pattern(
      R"({"ts":"%Y-%m-%dT%H:%M:%S.%f%z","level":"%l","service":"%n","pid":%P,"msg":"%*"})");
  return f;
}

LogFormat parse_log_format(const std::string& s) {
  if (s == "text") return LogFormat::kText;
  if (s == "json") return LogFormat::kJson;
  throw Error(Code::kInvalidArgument, "--log-format must be 'text' or 'json', got '" + s + "'",
              "log_format");
}

void init_logging(const std::string& service, LogFormat format, const std::string& level) {
  // Logs go to stderr: stdout is reserved for program output (the CLI, the agent's relayed lines).
  auto logger = spdlog::stderr_color_mt(service);
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    throw Error(Code::kInvalidArgument,
                "--log-level must be one of trace, debug, info, warn, error, critical, off; got '" +
                    level + "'",
                "log_level");
  logger->set_level(lvl);
  if (format == LogFormat::kJson) {
    logger->set_formatter(json_log_formatter());
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v");
  }
  spdlog::set_default_logger(logger);
  spdlog::flush_on(spdlog::level::info);
}

}  // namespace bulwark
