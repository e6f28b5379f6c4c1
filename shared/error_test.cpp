#include <doctest/doctest.h>

#include "shared/error.h"

using namespace bulwark;

TEST_CASE("error codes round-trip through their names and map to HTTP statuses") {
  for (Code c : {Code::kInvalidArgument, Code::kNotFound, Code::kUnavailable, Code::kUnimplemented, Code::kTimeout}) {
    CHECK(code_from_name(code_name(c)) == c);
  }
  CHECK(http_status(Code::kInvalidArgument) == 400);
  CHECK(http_status(Code::kNotFound) == 404);
  CHECK(http_status(Code::kAlreadyExists) == 409);
  CHECK(http_status(Code::kUnavailable) == 503);
  CHECK(code_from_name("no-such-code") == Code::kInternal);
}

TEST_CASE("errno_text names the call and the errno") {
  auto s = errno_text("open(/x)", 2);
  CHECK(s.find("open(/x)") == 0);
  CHECK(s.find("errno 2") != std::string::npos);
}
