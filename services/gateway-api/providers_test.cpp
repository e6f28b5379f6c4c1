// Providers against a real store and key ring: validation, masking, sealing at rest, rotation, and
// the environment a sandbox's agent gets.
#include "services/gateway-api/providers.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <fstream>

#include "services/gateway-api/lifecycle.h"
#include "shared/error.h"
#include "shared/util.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::gateway;

namespace {
const std::string kOpenAiKey = "sk-proj-SECRET-0123456789abcdef";
const std::string kGithubToken = "ghp_SECRETTOKEN0123456789";

v1::Provider provider(const std::string& name, const std::string& type, std::map<std::string, std::string> creds = {},
                      const std::string& base_url = "") {
  v1::Provider p;
  p.set_name(name);
  p.set_type(type);
  p.set_base_url(base_url);
  for (auto& [k, v] : creds) (*p.mutable_credentials())[k] = v;
  return p;
}

// The error's field, or "" when fn did not throw.
std::string field_of(const std::function<void()>& fn, Code* code = nullptr, std::string* msg = nullptr) {
  try {
    fn();
  } catch (const Error& e) {
    if (code) *code = e.code();
    if (msg) *msg = e.what();
    return e.field().empty() ? "(none)" : e.field();
  }
  return "";
}

struct Fixture {
  testing::TempDir dir;
  std::string ring = dir.file("provider.key");
  Store store{dir.file("g.db")};
  SecretBox box = SecretBox::load(ring);
  std::vector<std::string> changed;
  Providers providers{store, box, [this](const std::string& n) { changed.push_back(n); }};

  std::string sandbox(const std::vector<std::string>& provider_names, v1::SandboxPhase phase = v1::READY) {
    v1::Sandbox s;
    s.set_sandbox_id(random_hex(8));
    s.set_name("sb-" + s.sandbox_id());
    for (const auto& n : provider_names) s.mutable_spec()->add_providers(n);
    *s.mutable_created_at() = now_timestamp();
    transition(s, phase, "", now_timestamp());
    bool created = false;
    store.insert(s, "", &created);
    return s.sandbox_id();
  }
};

bool file_contains(const std::string& path, const std::string& needle) {
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return bytes.find(needle) != std::string::npos;
}
}  // namespace

TEST_CASE("base URLs: http(s)://host[:port][/path] only") {
  for (auto ok : {"http://127.0.0.1:11434", "https://api.openai.com", "https://h/v1", "http://[::1]:8000/x", "http://my_host:1"})
    CHECK_MESSAGE(check_base_url(ok) == "", ok);
  for (auto bad : {"", "ftp://x", "http://", "http://:80", "http://h:0", "http://h:99999", "http://h:", "http://u:p@h",
                   "http://h/a b", "http://h/?q=1", "http://h#f", "http://[::1", "http://h!x"})
    CHECK_MESSAGE(check_base_url(bad) != "", bad);
}

TEST_CASE("what can serve inference: an API style and a base URL") {
  CHECK(inference_problem("openai", "") == "");
  CHECK(inference_problem("generic", "http://127.0.0.1:11434") == "");
  CHECK(inference_problem("generic", "").find("base_url") != std::string::npos);
  CHECK(inference_problem("github", "https://x").find("no inference API") != std::string::npos);
}

TEST_CASE("a provider is checked field by field") {
  auto field = [](v1::Provider p) { return field_of([&] { normalize_provider(p); }); };
  CHECK(field(provider("ok", "openai", {{"OPENAI_API_KEY", "k"}})) == "");
  CHECK(field(provider("Bad Name", "openai", {{"OPENAI_API_KEY", "k"}})) == "name");
  CHECK(field(provider("x", "azure", {{"K", "v"}})) == "type");
  CHECK(field(provider("x", "generic", {{"A-B", "v"}})) == "credentials.A-B");
  CHECK(field(provider("x", "generic", {{"LD_PRELOAD", "/x.so"}})) == "credentials.LD_PRELOAD");
  CHECK(field(provider("x", "generic", {{"TOKEN", ""}})) == "credentials.TOKEN");
  CHECK(field(provider("x", "generic", {}, "ftp://h")) == "base_url");
  CHECK(field(provider("x", "generic", {}, "http://127.0.0.1:11434")) == "");  // keyless local server
  CHECK(field(provider("x", "github", {})) == "credentials");
  std::string msg;
  field_of([&] { auto p = provider("x", "anthropic"); normalize_provider(p); }, nullptr, &msg);
  CHECK_MESSAGE(msg.find("ANTHROPIC_API_KEY") != std::string::npos, msg);
  field_of([&] { auto p = provider("x", "azure"); normalize_provider(p); }, nullptr, &msg);
  CHECK_MESSAGE(msg.find(providers::type_names()) != std::string::npos, msg);
  auto p = provider("x", "generic", {}, "http://h:1/v1/");
  normalize_provider(p);
  CHECK(p.base_url() == "http://h:1/v1");
}

TEST_CASE("create, get and list mask every value; the database never holds a clear secret") {
  Fixture f;
  auto created = f.providers.create(provider("openai-prod", "openai", {{"OPENAI_API_KEY", kOpenAiKey}}));
  CHECK(created.credentials().at("OPENAI_API_KEY") == providers::mask(kOpenAiKey));
  CHECK(created.created_at().seconds() > 0);
  f.providers.create(provider("gh", "github", {{"GITHUB_TOKEN", kGithubToken}}));
  CHECK(f.providers.get("openai-prod").credentials().at("OPENAI_API_KEY") == providers::mask(kOpenAiKey));
  auto all = f.providers.list();
  REQUIRE(all.size() == 2);
  CHECK(all[0].name() == "gh");
  for (const auto& p : all)
    for (const auto& [k, v] : p.credentials()) CHECK((v != kOpenAiKey && v != kGithubToken));
  CHECK(f.providers.resolve("openai-prod").credentials().at("OPENAI_API_KEY") == kOpenAiKey);

  // Updated too, so the old sealed values and the new both went through the file.
  f.providers.update("gh", provider("", "", {{"GITHUB_TOKEN", kGithubToken + "2"}}), false);
  for (const auto& file : {f.dir.file("g.db"), f.dir.file("g.db-wal")})
    for (const auto& secret : {kOpenAiKey, kGithubToken, std::string("SECRET")})
      CHECK_MESSAGE(!file_contains(file, secret), file << " holds " << secret);

  Code code{};
  CHECK(field_of([&] { f.providers.create(provider("gh", "github", {{"GH_TOKEN", "x"}})); }, &code) == "name");
  CHECK(code == Code::kAlreadyExists);
  CHECK(field_of([&] { f.providers.get("nope"); }, &code) == "name");
  CHECK(code == Code::kNotFound);
}

TEST_CASE("update merges credentials, removes those set to \"\", replaces base_url when given") {
  Fixture f;
  f.providers.create(provider("local", "generic", {{"API_KEY", "key-one-aaaaaaaa"}, {"OTHER", "o"}}, "http://127.0.0.1:1"));
  auto p = f.providers.update("local", provider("", "", {{"OTHER", ""}, {"NEW", "new-value-bbbbbbbb"}}), false);
  CHECK(p.base_url() == "http://127.0.0.1:1");
  CHECK(p.credentials().size() == 2);
  CHECK(p.credentials().at("NEW") == providers::mask("new-value-bbbbbbbb"));
  auto clear = f.providers.resolve("local");
  CHECK(clear.credentials().at("API_KEY") == "key-one-aaaaaaaa");
  CHECK(clear.credentials().count("OTHER") == 0);
  CHECK(f.providers.update("local", provider("", "", {}, "http://10.0.0.5:11434/"), true).base_url() == "http://10.0.0.5:11434");
  CHECK(f.providers.update("local", provider("", "", {}), true).base_url() == "");  // given and empty: cleared
  CHECK(f.changed == std::vector<std::string>{"local", "local", "local"});

  f.providers.create(provider("oa", "openai", {{"OPENAI_API_KEY", kOpenAiKey}}));
  CHECK(field_of([&] { f.providers.update("oa", provider("", "", {{"OPENAI_API_KEY", ""}}), false); }) == "credentials");
  CHECK(field_of([&] { f.providers.update("oa", provider("", "anthropic"), false); }) == "type");
  CHECK(field_of([&] { f.providers.update("oa", provider("other", ""), false); }) == "name");
  CHECK(field_of([&] { f.providers.update("oa", provider("", "", {{"bad-key", "v"}}), false); }) == "credentials.bad-key");
  CHECK(field_of([&] { f.providers.update("missing", provider("", "", {{"K", "v"}}), false); }) == "name");
  CHECK(f.providers.resolve("oa").credentials().at("OPENAI_API_KEY") == kOpenAiKey);  // nothing applied
}

TEST_CASE("a provider an inference route uses cannot be deleted, nor lose what lets it serve") {
  Fixture f;
  f.providers.create(provider("ollama", "generic", {}, "http://127.0.0.1:11434"));
  v1::InferenceConfig c;
  auto* b = c.add_routes();
  b->set_match("llama*");
  b->add_backends()->set_provider("ollama");
  f.store.put_inference(c);
  Code code{};
  std::string msg;
  CHECK(field_of([&] { f.providers.remove("ollama"); }, &code, &msg) == "name");
  CHECK(code == Code::kFailedPrecondition);
  CHECK_MESSAGE(msg.find("route 'llama*' of the global table") != std::string::npos, msg);
  CHECK(field_of([&] { f.providers.update("ollama", provider("", ""), true); }, &code) == "base_url");
  CHECK(code == Code::kFailedPrecondition);
  f.store.delete_inference("");
  f.providers.remove("ollama");
  CHECK(f.changed == std::vector<std::string>{"ollama"});
  CHECK(field_of([&] { f.providers.remove("ollama"); }, &code) == "name");
  CHECK(code == Code::kNotFound);
}

TEST_CASE("a sandbox's environment: its non-inference providers only") {
  Fixture f;
  f.providers.create(provider("oa", "openai", {{"OPENAI_API_KEY", kOpenAiKey}}));
  f.providers.create(provider("gh", "github", {{"GITHUB_TOKEN", kGithubToken}}));
  f.providers.create(provider("misc", "generic", {{"TOOL_TOKEN", "t1"}, {"GITHUB_TOKEN", "shadowed"}}));
  std::string id = f.sandbox({"oa", "gh", "misc"});
  auto env = f.providers.env(id);
  CHECK(env.env().size() == 2);
  CHECK(env.env().at("GITHUB_TOKEN") == kGithubToken);  // the first provider listed keeps a name
  CHECK(env.env().at("TOOL_TOKEN") == "t1");
  CHECK(env.env().count("OPENAI_API_KEY") == 0);
  CHECK(std::vector<std::string>(env.providers().begin(), env.providers().end()) == std::vector<std::string>{"gh", "misc"});

  Code code{};
  CHECK(field_of([&] { f.providers.env("0000000000000000"); }, &code) == "sandbox_id");
  CHECK(code == Code::kNotFound);
  CHECK(field_of([&] { f.providers.env("sb-" + id); }, &code) == "sandbox_id");  // a name is not an id
  std::string gone = f.sandbox({"gh", "vanished"});
  CHECK(field_of([&] { f.providers.env(gone); }, &code) == "providers[1]");
  CHECK(code == Code::kNotFound);
}

TEST_CASE("at start, rows sealed with an older key are re-sealed with the current one") {
  testing::TempDir dir;
  const std::string old_key(64, '1'), new_key(64, '2'), lost_key(64, '3');
  std::string ring = dir.file("provider.key");
  auto write = [&](const std::string& text) {
    std::ofstream(ring, std::ios::trunc) << text;
    ::chmod(ring.c_str(), 0600);
  };
  Store store(dir.file("g.db"));
  write(old_key + "\n");
  {
    auto box = SecretBox::load(ring);
    Providers p(store, box);
    p.create(provider("a", "openai", {{"OPENAI_API_KEY", kOpenAiKey}}));
    p.create(provider("b", "github", {{"GITHUB_TOKEN", kGithubToken}}));
  }
  write(lost_key + "\n");
  {
    auto box = SecretBox::load(ring);  // a third row, under a key that will be lost
    Providers(store, box).create(provider("c", "github", {{"GH_TOKEN", "gh-lost-token-123"}}));
  }
  write(new_key + "\n" + old_key + "\n");
  auto box = SecretBox::load(ring);
  Providers p(store, box);
  CHECK(p.reseal() == 2);  // c's key is not in the ring: logged, left as is
  CHECK(box.is_current(store.find_provider("a")->sealed_credentials));
  CHECK(box.is_current(store.find_provider("b")->sealed_credentials));
  CHECK(p.reseal() == 0);
  Code code{};
  std::string msg;
  field_of([&] { p.get("c"); }, &code, &msg);
  CHECK(code == Code::kInternal);
  CHECK_MESSAGE(msg.find("key " + SecretBox::key_id_of(store.find_provider("c")->sealed_credentials)) != std::string::npos, msg);
  CHECK_MESSAGE(msg.find(ring) != std::string::npos, msg);

  write(new_key + "\n");  // the old line removed: a and b still open
  auto only_new = SecretBox::load(ring);
  Providers after(store, only_new);
  CHECK(after.resolve("a").credentials().at("OPENAI_API_KEY") == kOpenAiKey);
  CHECK(after.resolve("b").credentials().at("GITHUB_TOKEN") == kGithubToken);
}

TEST_CASE("provider_env: inference types never reach the environment") {
  std::vector<v1::Provider> ps = {provider("a", "anthropic", {{"ANTHROPIC_API_KEY", "x"}}),
                                  provider("g", "generic", {{"A", "1"}}), provider("h", "github", {{"GH_TOKEN", "t"}})};
  auto env = provider_env(ps);
  CHECK(env.env().size() == 2);
  CHECK(env.providers_size() == 2);
}
