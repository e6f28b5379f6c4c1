// SecretBox: AES-256-GCM with a key ring file.
#include "services/gateway-api/secret_box.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <fstream>

#include "shared/error.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::gateway;

namespace {
const std::string kKey1 = std::string(64, 'a');
const std::string kKey2 = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

std::string write_ring(const testing::TempDir& dir, const std::string& text, mode_t mode = 0600) {
  std::string path = dir.file("provider.key");
  std::ofstream(path, std::ios::trunc) << text;
  ::chmod(path.c_str(), mode);
  return path;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("the first start creates a key ring of one key, mode 0600; the next start reads the same key") {
  testing::TempDir dir;
  std::string path = dir.file("provider.key");
  auto box = SecretBox::load(path);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  std::string text = testing::read_file(path);
  CHECK(text.size() == 65);
  CHECK(text.back() == '\n');
  CHECK(text.find_first_not_of("0123456789abcdef\n") == std::string::npos);
  auto again = SecretBox::load(path);
  CHECK(again.current_key_id() == box.current_key_id());
  CHECK(box.current_key_id().size() == 8);
  CHECK(again.open(box.seal("x", "n"), "n") == "x");
}

TEST_CASE("seal and open round-trip; each seal uses a fresh nonce") {
  testing::TempDir dir;
  auto box = SecretBox::load(write_ring(dir, kKey1 + "\n"));
  std::string a = box.seal(R"({"OPENAI_API_KEY":"sk-secret-value"})", "openai-prod");
  std::string b = box.seal(R"({"OPENAI_API_KEY":"sk-secret-value"})", "openai-prod");
  CHECK(a != b);
  CHECK(a.rfind("v1:" + box.current_key_id() + ":", 0) == 0);
  CHECK(a.find("sk-secret-value") == std::string::npos);
  CHECK(SecretBox::key_id_of(a) == box.current_key_id());
  CHECK(box.is_current(a));
  CHECK(box.open(a, "openai-prod") == R"({"OPENAI_API_KEY":"sk-secret-value"})");
  CHECK(box.open(box.seal("", "x"), "x").empty());
  std::string big(100000, 'z');
  CHECK(box.open(box.seal(big, "x"), "x") == big);
}

TEST_CASE("a value sealed for one name does not open under another, nor once altered") {
  testing::TempDir dir;
  auto box = SecretBox::load(write_ring(dir, kKey1 + "\n"));
  std::string s = box.seal("secret", "alpha");
  CHECK(error_of([&] { box.open(s, "beta"); }).find("does not authenticate") != std::string::npos);
  std::string altered = s;
  size_t mid = altered.size() / 2;  // inside the ciphertext (the last characters may be padding bits)
  altered[mid] = altered[mid] == 'A' ? 'B' : 'A';
  CHECK_THROWS_AS(box.open(altered, "alpha"), Error);
  CHECK_THROWS_AS(box.open("v1:zz", "alpha"), Error);
  CHECK_THROWS_AS(box.open("clear text", "alpha"), Error);
  CHECK_THROWS_AS(box.open("v1:" + box.current_key_id() + ":!!!!", "alpha"), Error);
}

TEST_CASE("a value sealed with a key that is not in the ring names the key id and the key file") {
  testing::TempDir a_dir, b_dir;
  auto a = SecretBox::load(write_ring(a_dir, kKey1 + "\n"));
  auto b = SecretBox::load(write_ring(b_dir, kKey2 + "\n"));
  std::string msg = error_of([&] { b.open(a.seal("secret", "n"), "n"); });
  CHECK_MESSAGE(msg.find("key " + a.current_key_id()) != std::string::npos, msg);
  CHECK_MESSAGE(msg.find(b.path()) != std::string::npos, msg);
}

TEST_CASE("rotation: the first key seals, every key opens") {
  testing::TempDir dir;
  auto old_box = SecretBox::load(write_ring(dir, kKey1 + "\n"));
  std::string sealed = old_box.seal("secret", "n");
  // The operator prepends a new key (comments and blank lines are allowed).
  auto box = SecretBox::load(write_ring(dir, "# rotated\n" + kKey2 + "\n\n" + kKey1 + "\n"));
  CHECK(box.current_key_id() != old_box.current_key_id());
  CHECK_FALSE(box.is_current(sealed));
  CHECK(box.open(sealed, "n") == "secret");
  std::string resealed = box.seal(box.open(sealed, "n"), "n");
  CHECK(box.is_current(resealed));
  // Once the old line is removed, only what was re-sealed still opens.
  auto only_new = SecretBox::load(write_ring(dir, kKey2 + "\n"));
  CHECK(only_new.open(resealed, "n") == "secret");
  CHECK_THROWS_AS(only_new.open(sealed, "n"), Error);
}

TEST_CASE("a key ring others can read or write, or that is malformed, is refused with the path and the fix") {
  testing::TempDir dir;
  for (mode_t mode : {0644, 0640, 0620, 0604}) {
    std::string path = write_ring(dir, kKey1 + "\n", mode);
    std::string msg = error_of([&] { SecretBox::load(path); });
    CHECK_MESSAGE(msg.find("chmod 600 " + path) != std::string::npos, msg);
  }
  std::string path = write_ring(dir, kKey1 + "\nnot-a-key\n");
  std::string msg = error_of([&] { SecretBox::load(path); });
  CHECK_MESSAGE(msg.find(path) != std::string::npos, msg);
  CHECK_MESSAGE(msg.find("line 2") != std::string::npos, msg);
  CHECK_MESSAGE(msg.find("not-a-key") == std::string::npos, msg);  // a line is never quoted
  CHECK(error_of([&] { SecretBox::load(write_ring(dir, kKey1.substr(2) + "\n")); }).find("line 1") != std::string::npos);
  CHECK(error_of([&] { SecretBox::load(write_ring(dir, "\n# nothing\n")); }).find("holds no key") != std::string::npos);
  CHECK(error_of([&] { SecretBox::load(dir.file("no/such/dir/provider.key")); }).find("cannot create it") != std::string::npos);
}

TEST_CASE("the key ring lives beside the database by default") {
  CHECK(default_key_file("/var/lib/bulwark/gateway.db") == "/var/lib/bulwark/provider.key");
  CHECK(default_key_file("gateway.db") == "provider.key");
}
