#include <doctest/doctest.h>

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
