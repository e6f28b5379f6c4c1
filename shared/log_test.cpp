#include "shared/log.h"

#include <doctest/doctest.h>
#include <spdlog/details/log_msg.h>

#include <nlohmann/json.hpp>

#include "shared/error.h"

TEST_CASE("--log-format json: one JSON object per line with ts, level, service, pid, msg") {
  auto f = bulwark::json_log_formatter();
  // A message with quotes, a backslash, a newline and a control byte must stay one valid line.
  std::string text = "sandbox \"a\" at C:\\x\nsecond line \x01 end";
  spdlog::details::log_msg msg(spdlog::source_loc{}, "scheduler", spdlog::level::warn, text);
  spdlog::memory_buf_t buf;
  f->format(msg, buf);
  std::string line(buf.data(), buf.size());
  REQUIRE(!line.empty());
  CHECK(line.back() == '\n');
  line.pop_back();
  CHECK(line.find('\n') == std::string::npos);
  auto j = nlohmann::json::parse(line);
  CHECK(j["service"] == "scheduler");
  CHECK(j["level"] == "warning");
  CHECK(j["msg"] == text);
  CHECK(j["pid"].is_number_integer());
  CHECK(j["ts"].get<std::string>().size() >= 20);  // 2026-01-02T03:04:05.123456+0000
}

TEST_CASE("--log-format takes text or json only") {
  CHECK(bulwark::parse_log_format("json") == bulwark::LogFormat::kJson);
  CHECK(bulwark::parse_log_format("text") == bulwark::LogFormat::kText);
  CHECK_THROWS_AS(bulwark::parse_log_format("xml"), bulwark::Error);
}
