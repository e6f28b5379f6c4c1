#pragma once
// Pure policy editing for `policy update`, and the checks every new version passes: apply the
// operations to the YAML text, validate the result with the shared parser (the one the supervisor
// enforces with), and refuse changes to the static sections on a live sandbox. No I/O.
#include <google/protobuf/repeated_ptr_field.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bulwark/v1/policy.pb.h"
#include "shared/policy.h"

namespace bulwark::policy_service {

// A policy travels in one NATS message and is stored as one KV value (1 MiB each by default).
inline constexpr size_t kMaxYamlBytes = 512 * 1024;

// 16 lowercase hex digits, as the gateway makes them: safe as a subject token and a KV key.
bool is_sandbox_id(const std::string& s);
// Throws Error(kInvalidArgument, field "sandbox_id") unless is_sandbox_id(s).
void check_sandbox_id(const std::string& s);

// Applies ops in order to the policy text and returns the new text, re-emitted by yaml-cpp:
// comments are not kept; key order, quoting and flow/block style are. All or nothing. Throws
// Error whose field names the operation at fault (e.g. "operations[1].add_rule.rule_yaml"):
// invalid_argument for a malformed operation (YAML problems with their line:column in it),
// not_found for a network policy, endpoint or rule that is not there, already_exists for an
// endpoint or rule that is, failed_precondition for a removal that would leave an entry empty.
// The result is not validated: pass it to parse_or_throw.
std::string apply_operations(const std::string& yaml,
                             const google::protobuf::RepeatedPtrField<v1::PolicyOperation>& ops);

// Parses and validates with policy::parse_policy. A bad policy is Error(kInvalidArgument, field)
// listing every problem as "file:line:column: path: message", separated by "; " (NATS headers
// hold one line); a too large one is Error(kPayloadTooLarge, field).
policy::Policy parse_or_throw(const std::string& yaml, const std::string& filename, const std::string& field);

// The static sections (filesystem_policy, landlock, process) must stay those of the sandbox's
// version 1: policy::changed_static_sections, shared with the supervisor, compares them.
// Throws Error(kFailedPrecondition, field = the first changed section) naming every one changed.
void check_static_sections(const policy::Policy& live, const policy::Policy& next);

// The same as problems, for `validate`: one per changed section, at its key in next_yaml.
std::vector<policy::Problem> static_section_problems(const policy::Policy& live, const policy::Policy& next,
                                                     const std::string& next_yaml, const std::string& filename);

v1::PolicyProblem to_proto(const policy::Problem& p);

}  // namespace bulwark::policy_service
