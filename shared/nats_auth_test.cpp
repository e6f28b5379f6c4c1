#include "shared/nats_auth.h"

#include <doctest/doctest.h>
#include <nats/nats.h>

#include <cstdlib>

#include "shared/error.h"

using namespace bulwark::nats_auth;

TEST_CASE("base32 and base64url round-trip and match RFC 4648 vectors") {
  CHECK(base32_encode("foobar") == "MZXW6YTBOI");  // RFC 4648 section 10, padding dropped
  CHECK(base32_decode("MZXW6YTBOI") == "foobar");
  CHECK(base64url_encode("\xfb\xff") == "-_8");
  CHECK(base64url_decode("-_8") == "\xfb\xff");
  CHECK_THROWS_AS(base32_decode("mzxw"), bulwark::Error);  // lowercase is not nkey base32
}

TEST_CASE("crc16 is XMODEM") { CHECK(crc16_xmodem("123456789") == 0x31C3); }

TEST_CASE("nkeys encode with the right prefixes and round-trip through their seed") {
  for (auto [type, pub_prefix, seed_prefix] :
       {std::tuple{KeyType::kOperator, 'O', "SO"}, {KeyType::kAccount, 'A', "SA"}, {KeyType::kUser, 'U', "SU"}}) {
    KeyPair k = KeyPair::create(type);
    CHECK(k.public_key().size() == 56);
    CHECK(k.public_key()[0] == pub_prefix);
    CHECK(k.encoded_seed().size() == 58);
    CHECK(k.encoded_seed().starts_with(seed_prefix));
    KeyPair back = KeyPair::from_seed(k.encoded_seed());
    CHECK(back.type() == type);
    CHECK(back.public_key() == k.public_key());
    CHECK(decode_public_key(k.public_key(), type).size() == 32);
  }
  KeyPair u = KeyPair::create(KeyType::kUser);
  CHECK_THROWS_AS(decode_public_key(u.public_key(), KeyType::kAccount), bulwark::Error);
  std::string typo = u.public_key();
  typo[10] = typo[10] == 'A' ? 'B' : 'A';
  CHECK_THROWS_AS(decode_public_key(typo), bulwark::Error);  // the checksum catches it
  CHECK_THROWS_AS(KeyPair::from_seed(u.public_key()), bulwark::Error);
}

TEST_CASE("signatures match libnats' own nkey signer and verify") {
  // libnats decodes the seed with its own nkeys code: an encoding mistake here would make it sign
  // with another key, or refuse the seed.
  REQUIRE(nats_Open(-1) == NATS_OK);  // libnats' base32 tables are set up here
  KeyPair u = KeyPair::create(KeyType::kUser);
  const std::string nonce = "server-nonce-1234";
  unsigned char* sig = nullptr;
  int len = 0;
  REQUIRE(nats_Sign(u.encoded_seed().c_str(), nonce.c_str(), &sig, &len) == NATS_OK);
  std::string theirs(reinterpret_cast<char*>(sig), static_cast<size_t>(len));
  free(sig);
  CHECK(u.sign(nonce) == theirs);
  CHECK(verify(u.public_key(), nonce, theirs));
  CHECK_FALSE(verify(u.public_key(), nonce + "x", theirs));
  CHECK_FALSE(verify(KeyPair::create(KeyType::kUser).public_key(), nonce, theirs));
}

TEST_CASE("user JWT: claims shape, signature, expiry and deny-by-default") {
  KeyPair acct = KeyPair::create(KeyType::kAccount);
  KeyPair user = KeyPair::create(KeyType::kUser);
  Permissions p;
  p.pub_allow = {"a.b"};
  std::string jwt = user_jwt(acct, user.public_key(), "svc", p, 1700000000, 1700003600);
  auto c = verified_claims(jwt);
  CHECK(c["iss"] == acct.public_key());
  CHECK(c["sub"] == user.public_key());
  CHECK(c["name"] == "svc");
  CHECK(c["iat"] == 1700000000);
  CHECK(c["exp"] == 1700003600);
  CHECK(c["jti"].get<std::string>().size() == 52);  // base32 of a 32-byte hash
  CHECK(c["nats"]["type"] == "user");
  CHECK(c["nats"]["version"] == 2);
  CHECK(c["nats"]["pub"]["allow"] == nlohmann::json::array({"a.b"}));
  CHECK(c["nats"]["sub"]["deny"] == nlohmann::json::array({">"}));  // nothing given: nothing allowed
  CHECK_FALSE(c["nats"].contains("resp"));
  // A changed claim breaks the signature.
  std::string forged = jwt;
  auto d1 = forged.find('.'), d2 = forged.find('.', d1 + 1);
  auto claims = nlohmann::json::parse(base64url_decode(forged.substr(d1 + 1, d2 - d1 - 1)));
  claims["nats"]["pub"]["allow"] = {">"};
  forged = forged.substr(0, d1 + 1) + base64url_encode(claims.dump()) + forged.substr(d2);
  CHECK_THROWS_AS(verified_claims(forged), bulwark::Error);
  // Only the right key type may sign each kind.
  CHECK_THROWS_AS(user_jwt(user, user.public_key(), "x", p, 1), bulwark::Error);
}

TEST_CASE("operator and account JWTs") {
  KeyPair op = KeyPair::create(KeyType::kOperator);
  KeyPair sys = KeyPair::create(KeyType::kAccount);
  auto oc = verified_claims(operator_jwt(op, "bulwark", sys.public_key(), 1));
  CHECK(oc["iss"] == op.public_key());
  CHECK(oc["sub"] == op.public_key());
  CHECK(oc["nats"]["type"] == "operator");
  CHECK(oc["nats"]["system_account"] == sys.public_key());
  auto ac = verified_claims(account_jwt(op, sys.public_key(), "SYS", true, 1));
  CHECK(ac["nats"]["type"] == "account");
  CHECK(ac["nats"]["limits"]["disk_storage"] == -1);
  auto no_js = verified_claims(account_jwt(op, sys.public_key(), "SYS", false, 1));
  CHECK_FALSE(no_js["nats"]["limits"].contains("disk_storage"));
  CHECK_THROWS_AS(account_jwt(sys, sys.public_key(), "x", false, 1), bulwark::Error);
}

TEST_CASE("creds files round-trip; malformed ones are refused") {
  KeyPair acct = KeyPair::create(KeyType::kAccount);
  KeyPair user = KeyPair::create(KeyType::kUser);
  std::string jwt = user_jwt(acct, user.public_key(), "u", {}, 1);
  std::string text = creds_file(jwt, user.encoded_seed());
  CHECK(text.starts_with("-----BEGIN NATS USER JWT-----\n"));
  Creds c = parse_creds(text);
  CHECK(c.jwt == jwt);
  CHECK(c.seed == user.encoded_seed());
  CHECK_THROWS_AS(parse_creds("nothing here"), bulwark::Error);
  CHECK_THROWS_AS(parse_creds("-----BEGIN NATS USER JWT-----\nabc\n------END NATS USER JWT------\n"), bulwark::Error);
}

TEST_CASE("sandbox permissions name only that sandbox") {
  const std::string id = "0123456789abcdef";
  Permissions p = sandbox_permissions(id);
  for (const auto& s : p.sub_allow) CHECK(s.find(id) != std::string::npos);
  for (const auto& s : p.pub_allow) {
    INFO(s);
    bool own = s.find(id) != std::string::npos;
    bool policy_kv = s.find("KV_policies") != std::string::npos || s == "$JS.API.INFO" || s == "$JS.API.STREAM.NAMES";
    CHECK((own || policy_kv));
    CHECK(s.find("bulwark.>") == std::string::npos);
  }
  CHECK(p.allow_responses);
  CHECK_THROWS_AS(sandbox_permissions("*"), bulwark::Error);
  CHECK_THROWS_AS(sandbox_permissions("0123456789abcde>"), bulwark::Error);
  CHECK(sandbox_inbox_prefix(id) == "_INBOX." + id);
}

TEST_CASE("service permissions exist for every service and refuse unknown ones") {
  for (const auto& s : service_names()) {
    Permissions p = service_permissions(s);
    CHECK(std::find(p.sub_allow.begin(), p.sub_allow.end(), "bulwark." + s + ".health") != p.sub_allow.end());
    CHECK(std::find(p.pub_allow.begin(), p.pub_allow.end(), "bulwark." + s + ".health") != p.pub_allow.end());
  }
  CHECK_THROWS_AS(service_permissions("supervisor"), bulwark::Error);
  // Nobody but the gateway may send exec requests to supervisors.
  auto sched = service_permissions("scheduler");
  CHECK(std::find(sched.pub_allow.begin(), sched.pub_allow.end(), "bulwark.exec.>") == sched.pub_allow.end());
}

TEST_CASE("server config fragment") {
  std::string s = server_config("OPJWT", "ASYS", {{"A1", "J1"}});
  CHECK(s.find("operator: OPJWT\n") != std::string::npos);
  CHECK(s.find("system_account: ASYS\n") != std::string::npos);
  CHECK(s.find("resolver: MEMORY\n") != std::string::npos);
  CHECK(s.find("  A1: J1\n") != std::string::npos);
}
