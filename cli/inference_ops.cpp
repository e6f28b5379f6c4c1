#include "cli/inference_ops.h"

#include <google/protobuf/descriptor.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdio>

#include "bulwark/v1/inference.pb.h"
#include "cli/client.h"
#include "cli/format.h"
#include "cli/format.h"

namespace bulwark::cli {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

// --- YAML (or JSON, which is YAML) to the protobuf JSON mapping, typed by the message's fields ---

struct Converter {
  const std::string& file;

  [[noreturn]] void fail(const YAML::Node& n, const std::string& path, const std::string& why) const {
    std::string where = file;
    const YAML::Mark m = n.Mark();
    if (m.line >= 0) where += ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
    throw CliError{kUsage, "--file " + where + ": " + (path.empty() ? "" : path + ": ") + why};
  }

  json message(const YAML::Node& n, const Descriptor* d, const std::string& path) const {
    if (n.IsNull()) return json::object();
    if (!n.IsMap()) fail(n, path, "must be a mapping");
    json out = json::object();
    for (const auto& kv : n) {
      const std::string key = kv.first.Scalar();
      const std::string fp = path.empty() ? key : path + "." + key;
      const FieldDescriptor* f = d->FindFieldByName(key);
      if (!f) f = d->FindFieldByCamelcaseName(key);
      if (!f) {
        std::string names;
        for (int i = 0; i < d->field_count(); ++i) names += (i ? ", " : "") + d->field(i)->name();
        fail(kv.first, fp, "unknown field; allowed: " + names);
      }
      out[f->name()] = field(kv.second, f, fp);
    }
    return out;
  }

  json field(const YAML::Node& n, const FieldDescriptor* f, const std::string& path) const {
    if (n.IsNull()) return nullptr;
    if (f->is_map()) {
      if (!n.IsMap()) fail(n, path, "must be a mapping");
      json out = json::object();
      const FieldDescriptor* vf = f->message_type()->FindFieldByName("value");
      for (const auto& kv : n) out[kv.first.Scalar()] = value(kv.second, vf, path + "." + kv.first.Scalar());
      return out;
    }
    if (f->is_repeated()) {
      if (!n.IsSequence()) fail(n, path, "must be a list");
      json out = json::array();
      for (size_t i = 0; i < n.size(); ++i) out.push_back(value(n[i], f, path + "[" + std::to_string(i) + "]"));
      return out;
    }
    return value(n, f, path);
  }

  json value(const YAML::Node& n, const FieldDescriptor* f, const std::string& path) const {
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      // Well-known types (updated_at) keep their JSON string form.
      if (f->message_type()->full_name().rfind("google.protobuf.", 0) == 0) {
        if (!n.IsScalar()) fail(n, path, "must be a single value");
        return n.Scalar();
      }
      return message(n, f->message_type(), path);
    }
    if (!n.IsScalar()) fail(n, path, "must be a single value");
    try {
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_BOOL: return n.as<bool>();
        case FieldDescriptor::CPPTYPE_INT32:
        case FieldDescriptor::CPPTYPE_INT64: return n.as<int64_t>();
        case FieldDescriptor::CPPTYPE_UINT32:
        case FieldDescriptor::CPPTYPE_UINT64: return n.as<uint64_t>();
        case FieldDescriptor::CPPTYPE_FLOAT:
        case FieldDescriptor::CPPTYPE_DOUBLE: return n.as<double>();
        default: return n.Scalar();  // strings and enum names, as written
      }
    } catch (const YAML::BadConversion&) {
      fail(n, path, "must be " + std::string(f->cpp_type() == FieldDescriptor::CPPTYPE_BOOL ? "true or false" : "a number") +
                        ", got '" + n.Scalar() + "'");
    }
  }
};

std::string number(const json& v) {
  if (!v.is_number()) return v.is_string() ? v.get<std::string>() : "";
  double d = v.get<double>();
  char buf[32];
  if (std::floor(d) == d && std::fabs(d) < 1e15) std::snprintf(buf, sizeof buf, "%.0f", d);
  else std::snprintf(buf, sizeof buf, "%g", d);
  return buf;
}

// uint64 fields arrive as JSON strings (the protobuf mapping), doubles and int32 as numbers.
double as_double(const json& v) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    try {
      return std::stod(v.get<std::string>());
    } catch (const std::exception&) {
    }
  }
  return 0;
}

std::string short_time(std::string t) {  // 2025-01-02T03:04:05.123Z -> 2025-01-02T03:04:05Z
  auto dot = t.find('.');
  if (dot != std::string::npos && t.back() == 'Z') t = t.substr(0, dot) + "Z";
  return t;
}


}  // namespace

json inference_set_body(const InferenceSetFlags& f, const json& current) {
  json backend = {{"provider", f.provider}, {"privacy", f.privacy}, {"cost", f.cost}};
  if (!f.model.empty()) backend["model"] = f.model;
  json route = {{"match", f.match}, {"backends", json::array({backend})}};
  if (!f.append || !current.is_object()) {
    return {{"privacy", f.sandbox_privacy.empty() ? "any" : f.sandbox_privacy}, {"routes", json::array({route})}};
  }
  json out = current;
  out.erase("sandbox_id");  // named by ?sandbox_id=, which may be a name
  out.erase("updated_at");
  if (!f.sandbox_privacy.empty()) out["privacy"] = f.sandbox_privacy;
  if (!out["routes"].is_array()) out["routes"] = json::array();
  for (auto& r : out["routes"]) {
    if (r.value("match", "") != f.match) continue;
    if (!r["backends"].is_array()) r["backends"] = json::array();
    for (const auto& b : r["backends"])
      if (b.value("provider", "") == f.provider && b.value("model", "") == f.model)
        throw CliError{kUsage, "route '" + f.match + "' already has provider " + f.provider +
                                   (f.model.empty() ? "" : " with model " + f.model) +
                                   "; to change it, edit the table (`bulwark inference get -o yaml`, then `inference set --file`)"};
    r["backends"].push_back(backend);
    return out;
  }
  out["routes"].push_back(route);
  return out;
}

json inference_config_from_text(const std::string& file, const std::string& text) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw CliError{kUsage, "--file " + file + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                               ": " + e.msg};
  }
  if (!root.IsMap()) throw CliError{kUsage, "--file " + file + ": expected a route table (privacy, routes) as YAML or JSON"};
  return Converter{file}.message(root, v1::InferenceConfig::descriptor(), "");
}

std::string inference_config_table(const json& c) {
  std::string scope = c.value("sandbox_id", "");
  std::string out = "scope " + (scope.empty() ? std::string("global") : "sandbox " + scope) + ", privacy " +
                    c.value("privacy", "any") +
                    (c.contains("updated_at") ? ", updated " + short_time(c.value("updated_at", "")) : "") + "\n";
  std::vector<std::vector<std::string>> rows = {{"MATCH", "PROVIDER", "MODEL", "PRIVACY", "COST"}};
  for (const auto& r : c.value("routes", json::array()))
    for (const auto& b : r.value("backends", json::array())) {
      std::string model = b.value("model", "");
      rows.push_back({r.value("match", ""), b.value("provider", ""), model.empty() ? "(as asked)" : model,
                      b.value("privacy", "any"), number(b.value("cost", json(0)))});
    }
  return out + table(rows);
}

namespace {

// In the message's field order (match before backends), leaving out empty strings (the default).
void emit_message(YAML::Emitter& e, const json& j, const Descriptor* d) {
  e << YAML::BeginMap;
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (!j.contains(f->name())) continue;
    const json& v = j[f->name()];
    if (v.is_null() || (v.is_string() && v.get<std::string>().empty())) continue;
    const bool nested = f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !f->is_map() &&
                        f->message_type()->full_name().rfind("google.protobuf.", 0) != 0;
    e << YAML::Key << f->name() << YAML::Value;
    if (nested && f->is_repeated() && v.is_array()) {
      e << YAML::BeginSeq;
      for (const auto& x : v) emit_message(e, x, f->message_type());
      e << YAML::EndSeq;
    } else if (nested && v.is_object()) {
      emit_message(e, v, f->message_type());
    } else if (v.is_number()) {
      e << number(v);  // cost 1, not 1.0
    } else {
      emit_yaml(e, v);
    }
  }
  e << YAML::EndMap;
}

}  // namespace

std::string inference_config_yaml(const json& c) {
  json body = c;
  std::string heading = "# inference routes of " +
                        (c.value("sandbox_id", "").empty() ? std::string("the global scope") : "sandbox " + c.value("sandbox_id", "")) +
                        (c.contains("updated_at") ? ", updated " + c.value("updated_at", "") : "") + "\n";
  body.erase("sandbox_id");  // so the file can be set on any scope
  body.erase("updated_at");
  YAML::Emitter e;
  emit_message(e, body, v1::InferenceConfig::descriptor());
  return heading + e.c_str() + "\n";
}

std::string inference_event_table(const std::vector<json>& lines) {
  std::vector<std::vector<std::string>> rows = {{"TIME", "STATUS", "CALL", "BYTES", "LATENCY", "NOTE"}};
  for (const auto& l : lines) {
    const json ev = l.value("inference", json::object());
    std::string call = ev.value("model", "");
    if (call.empty()) call = "?";
    if (!ev.value("provider", "").empty()) {
      std::string backend_model = ev.value("backend_model", "");
      call += " -> " + ev.value("provider", "") + (backend_model.empty() ? "" : "(" + backend_model + ")");
    }
    int status = ev.value("status", 0);
    char latency[32];
    std::snprintf(latency, sizeof latency, "%.0f ms", as_double(ev.value("latency_ms", json(0))));
    std::string note = ev.value("error", "");
    if (note.empty() && !ev.value("attempts", json::array()).empty()) {
      note = "after ";
      bool first = true;
      for (const auto& a : ev["attempts"]) {
        note += (first ? "" : "; ") + (a.is_string() ? a.get<std::string>() : std::string("?"));
        first = false;
      }
    }
    if (ev.value("streamed", false)) note = note.empty() ? "streamed" : "streamed, " + note;
    rows.push_back({short_time(l.value("at", "")), status ? std::to_string(status) : "-", call,
                    number(ev.value("request_bytes", json("0"))) + "/" + number(ev.value("response_bytes", json("0"))),
                    latency, note});
  }
  return table(rows);
}

}  // namespace bulwark::cli
