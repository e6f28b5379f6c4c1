#include "shared/proto_json.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "shared/error.h"

namespace bulwark {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

const char* json_kind(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "a number";
    default: return "an unsupported value";
  }
}

[[noreturn]] void type_error(const std::string& path, const char* want, const json& got) {
  throw Error(Code::kInvalidArgument, path + ": must be " + want + ", got " + json_kind(got), path);
}

void check_message(const json& j, const Descriptor* d, const std::string& path);

// Checks one (non-repeated) value of field f. Well-known types keep their JSON forms (Timestamp is a string).
void check_value(const json& v, const FieldDescriptor* f, const std::string& path) {
  if (v.is_null()) return;  // the mapping reads null as "not set"
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      if (!v.is_string()) type_error(path, "a string", v);
      return;
    case FieldDescriptor::CPPTYPE_BOOL:
      if (!v.is_boolean()) type_error(path, "true or false", v);
      return;
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      if (!(v.is_number_integer() || v.is_number_unsigned() || v.is_string()))
        type_error(path, "an integer", v);
      if (v.is_string()) {  // the JSON mapping's form for 64-bit integers: digits only
        const auto& t = v.get_ref<const std::string&>();
        bool is_signed = f->cpp_type() == FieldDescriptor::CPPTYPE_INT32 || f->cpp_type() == FieldDescriptor::CPPTYPE_INT64;
        size_t start = is_signed && !t.empty() && t[0] == '-' ? 1 : 0;
        bool digits = t.size() > start && t.find_first_not_of("0123456789", start) == std::string::npos;
        if (!digits) throw Error(Code::kInvalidArgument, path + ": must be an integer, got '" + t + "'", path);
      }
      return;
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE:
      if (!v.is_number()) type_error(path, "a number", v);
      return;
    case FieldDescriptor::CPPTYPE_ENUM:
      if (!(v.is_string() || v.is_number_integer())) type_error(path, "an enum name", v);
      if (v.is_string() && !f->enum_type()->FindValueByName(v.get<std::string>()))
        throw Error(Code::kInvalidArgument, path + ": unknown value '" + v.get<std::string>() + "'", path);
      return;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      if (f->message_type()->file()->name().rfind("google/protobuf/", 0) == 0) return;  // WKT: let the mapping judge
      if (!v.is_object()) type_error(path, "an object", v);
      check_message(v, f->message_type(), path);
      return;
  }
}

void check_message(const json& j, const Descriptor* d, const std::string& path) {
  if (!j.is_object()) type_error(path.empty() ? "body" : path, "a JSON object", j);
  for (const auto& [key, v] : j.items()) {
    const FieldDescriptor* f = d->FindFieldByName(key);
    if (!f) f = d->FindFieldByCamelcaseName(key);
    std::string fp = path.empty() ? key : path + "." + key;
    if (!f) throw Error(Code::kInvalidArgument, fp + ": unknown field", fp);
    if (f->is_map()) {
      if (v.is_null()) continue;
      if (!v.is_object()) type_error(fp, "an object", v);
      const FieldDescriptor* value_field = f->message_type()->FindFieldByName("value");
      for (const auto& [k, mv] : v.items()) check_value(mv, value_field, fp + "." + k);
    } else if (f->is_repeated()) {
      if (v.is_null()) continue;
      if (!v.is_array()) type_error(fp, "an array", v);
      for (size_t i = 0; i < v.size(); ++i) check_value(v[i], f, fp + "[" + std::to_string(i) + "]");
    } else {
      check_value(v, f, fp);
    }
  }
}

}  // namespace

void json_to_message(const std::string& body, google::protobuf::Message* out) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw Error(Code::kInvalidArgument, "malformed JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  }
  check_message(j, out->GetDescriptor(), "");
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = false;
  auto st = google::protobuf::util::JsonStringToMessage(body, out, opts);
  if (!st.ok()) throw Error(Code::kInvalidArgument, "invalid " + out->GetDescriptor()->name() + ": " + std::string(st.message()));
}

std::string message_to_json(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  // false, 0 and "" are printed too: a client reading "valid" or "exit_code" must not have to
  // know that proto3 leaves defaults out.
  opts.always_print_primitive_fields = true;
  std::string out;
  auto st = google::protobuf::util::MessageToJsonString(m, &out, opts);
  if (!st.ok()) throw Error(Code::kInternal, "cannot encode " + m.GetTypeName() + " as JSON: " + std::string(st.message()));
  return out;
}

}  // namespace bulwark
