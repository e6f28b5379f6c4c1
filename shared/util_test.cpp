#include <doctest/doctest.h>

#include "shared/error.h"
#include "shared/util.h"

using namespace bulwark;

TEST_CASE("random ids are hex of the asked length and differ") {
  auto a = random_hex(6), b = random_hex(6);
  CHECK(a.size() == 12);
  CHECK(a != b);
  CHECK(is_subject_token(a));
}

TEST_CASE("subject tokens and DNS labels reject what would break a subject or a container name") {
  CHECK(is_subject_token("podman-host1"));
  CHECK_FALSE(is_subject_token("a.b"));
  CHECK_FALSE(is_subject_token("a*"));
  CHECK_FALSE(is_subject_token(""));
  CHECK(is_dns_label("my-box1"));
  CHECK_FALSE(is_dns_label("-x"));
  CHECK_FALSE(is_dns_label("UPPER"));
  CHECK_FALSE(is_dns_label(std::string(64, 'a')));
}

TEST_CASE("parse_bytes: sizes with binary units; anything else names the field") {
  CHECK(parse_bytes("", "memory_limit") == 0);
  CHECK(parse_bytes("0", "memory_limit") == 0);
  CHECK(parse_bytes("1048576", "memory_limit") == 1048576);
  CHECK(parse_bytes("64k", "memory_limit") == 64 * 1024);
  CHECK(parse_bytes("512m", "memory_limit") == 512ll << 20);
  CHECK(parse_bytes("512MB", "memory_limit") == 512ll << 20);
  CHECK(parse_bytes("2g", "memory_limit") == 2ll << 30);
  for (const char* bad : {"m", "1.5g", "-1", "12x", "99999999999999999999"}) {
    CAPTURE(bad);
    try {
      parse_bytes(bad, "memory_limit");
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.code() == Code::kInvalidArgument);
      CHECK(e.field() == "memory_limit");
    }
  }
}

TEST_CASE("url_path_escape keeps what a path segment may hold and encodes the rest") {
  CHECK(url_path_escape("localhost/bulwark/base:latest") == "localhost/bulwark/base:latest");
  CHECK(url_path_escape("a b?c#d%") == "a%20b%3Fc%23d%25");
}
