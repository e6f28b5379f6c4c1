#pragma once
// `bulwark inference` flags and files turned into InferenceConfig JSON (PUT /v1/inference), and
// route tables and inference events printed for people. Pure.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace bulwark::cli {

struct InferenceSetFlags {
  std::string provider;
  std::string model;               // "" = the model the agent asked for
  std::string match = "*";
  std::string privacy = "any";     // the backend's
  double cost = 1;
  bool append = false;
  std::string sandbox_privacy;     // the table's; "" = any (replace) or unchanged (--append)
};

// Without --append: a table of one route {match, [backend]}. With --append: current (the scope's
// table, or null when it has none) plus the backend, added to the route with the same match or as a
// new last route. The body never names the sandbox (the query does). Throws CliError(kUsage) when
// the backend is already in that route.
nlohmann::json inference_set_body(const InferenceSetFlags& f, const nlohmann::json& current);

// An InferenceConfig from a YAML or JSON file (text given). YAML scalars are typed by the message's
// fields, so `cost: 1` is a number and `model: 3` a string. Throws CliError(kUsage) with
// FILE:LINE:COLUMN and the field path for an unknown field or a value of the wrong kind.
nlohmann::json inference_config_from_text(const std::string& file, const std::string& text);

// The route table: a heading (scope, privacy, updated) and MATCH, PROVIDER, MODEL, PRIVACY, COST.
std::string inference_config_table(const nlohmann::json& config);
// The same table as YAML that `inference set --file` reads back.
std::string inference_config_yaml(const nlohmann::json& config);
// TIME, STATUS, CALL (model -> provider(backend_model)), BYTES (in/out), LATENCY, NOTE for each log
// line of stream "inference".
std::string inference_event_table(const std::vector<nlohmann::json>& lines);

}  // namespace bulwark::cli
