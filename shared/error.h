#pragma once
// Bulwark's one error type. Every failure that crosses a boundary (REST, NATS, CLI) carries a
// machine code, a message that says what to do, and the field at fault when there is one.
#include <stdexcept>
#include <string>

namespace bulwark {

enum class Code {
  kInvalidArgument,  // 400
  kUnauthenticated,  // 401
  kPermissionDenied, // 403
  kNotFound,         // 404
  kAlreadyExists,    // 409
  kFailedPrecondition, // 409
  kPayloadTooLarge,  // 413
  kUnimplemented,    // 501
  kUnavailable,      // 503
  kTimeout,          // 504
  kInternal,         // 500
};

const char* code_name(Code c);       // "invalid_argument", ...
Code code_from_name(const std::string& name);  // unknown names map to kInternal
int http_status(Code c);

class Error : public std::runtime_error {
 public:
  Error(Code code, std::string message, std::string field = {})
      : std::runtime_error(message), code_(code), field_(std::move(field)) {}
  Code code() const { return code_; }
  const std::string& field() const { return field_; }

 private:
  Code code_;
  std::string field_;
};

// Nobody subscribes to a request's subject (the service is not running). A kUnavailable Error, as
// a distinct type so callers can tell "nobody there" from an error reply that says unavailable.
class NoResponders : public Error {
 public:
  explicit NoResponders(const std::string& subject)
      : Error(Code::kUnavailable, "nothing is listening on " + subject), subject_(subject) {}
  const std::string& subject() const { return subject_; }

 private:
  std::string subject_;
};

// errno as text with the call that failed: "open(/x): No such file or directory".
std::string errno_text(const std::string& what, int err);

}  // namespace bulwark
