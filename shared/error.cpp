#include "shared/error.h"

#include <cstring>
#include <utility>

namespace bulwark {
namespace {
constexpr std::pair<Code, const char*> kNames[] = {
    {Code::kInvalidArgument, "invalid_argument"},
    {Code::kUnauthenticated, "unauthenticated"},
    {Code::kPermissionDenied, "permission_denied"},
    {Code::kNotFound, "not_found"},
    {Code::kAlreadyExists, "already_exists"},
    {Code::kFailedPrecondition, "failed_precondition"},
    {Code::kPayloadTooLarge, "payload_too_large"},
    {Code::kUnimplemented, "unimplemented"},
    {Code::kUnavailable, "unavailable"},
    {Code::kTimeout, "timeout"},
    {Code::kInternal, "internal"},
};
}  // namespace

const char* code_name(Code c) {
  for (const auto& [code, name] : kNames)
    if (code == c) return name;
  return "internal";
}

Code code_from_name(const std::string& name) {
  for (const auto& [code, n] : kNames)
    if (name == n) return code;
  return Code::kInternal;
}

int http_status(Code c) {
  switch (c) {
    case Code::kInvalidArgument: return 400;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists:
    case Code::kFailedPrecondition: return 409;
    case Code::kPayloadTooLarge: return 413;
    case Code::kUnimplemented: return 501;
    case Code::kUnavailable: return 503;
    case Code::kTimeout: return 504;
    case Code::kInternal: return 500;
  }
  return 500;
}

std::string errno_text(const std::string& what, int err) {
  return what + ": " + std::strerror(err) + " (errno " + std::to_string(err) + ")";
}

}  // namespace bulwark
