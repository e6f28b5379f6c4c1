#pragma once
// REST bodies are the protobuf JSON mapping of Bulwark's messages. This is the one place that
// turns JSON into messages, rejecting what the mapping would accept silently or explain badly:
// malformed JSON (with the byte offset), unknown fields and wrong JSON types, each naming the
// field path ("spec.command[1]").
#include <google/protobuf/message.h>

#include <string>

namespace bulwark {

// Throws Error(kInvalidArgument, ..., field).
void json_to_message(const std::string& json, google::protobuf::Message* out);
// Compact JSON, proto field names (snake_case: sandbox_id), zero-valued fields omitted.
std::string message_to_json(const google::protobuf::Message& m);

}  // namespace bulwark
