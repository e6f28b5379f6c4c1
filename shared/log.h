#pragma once
// spdlog set up once per process: the logger is named after the service, and --log-format json
// turns every line into one JSON object (ts, level, service, msg) for log shippers.
#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>

#include <string>

namespace bulwark {

enum class LogFormat { kText, kJson };

LogFormat parse_log_format(const std::string& s);  // "text" | "json", throws Error naming --log-format
void init_logging(const std::string& service, LogFormat format, const std::string& level);
// The formatter --log-format json installs: one object per line, {"ts","level","service","pid","msg"}.
std::unique_ptr<spdlog::formatter> json_log_formatter();

// JSON string escaping shared by the JSON log formatter and anything else that writes JSON by hand.
std::string json_escape(std::string_view s);

}  // namespace bulwark
