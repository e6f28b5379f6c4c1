#include "services/gateway-api/providers.h"

#include <spdlog/spdlog.h>

#include <cctype>
#include <nlohmann/json.hpp>

#include "services/gateway-api/paging.h"
#include "shared/error.h"
#include "shared/util.h"

namespace bulwark::gateway {

namespace {

google::protobuf::Timestamp timestamp(int64_t ms) {
  google::protobuf::Timestamp t;
  t.set_seconds(ms / 1000);
  t.set_nanos(static_cast<int32_t>(ms % 1000) * 1000000);
  return t;
}

bool host_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_'; }

std::string check_port(const std::string& p) {
  if (p.empty() || p.size() > 5) return "the port must be a number from 1 to 65535";
  for (char c : p)
    if (!std::isdigit(static_cast<unsigned char>(c))) return "the port must be a number from 1 to 65535";
  int n = std::stoi(p);
  return n >= 1 && n <= 65535 ? "" : "the port must be a number from 1 to 65535";
}

// Variables that change how a program loads code: the same ones SandboxSpec.env refuses.
bool loader_variable(const std::string& k) {
  return k.rfind("LD_", 0) == 0 || k == "GLIBC_TUNABLES" || k == "GCONV_PATH" || k == "LOCPATH" || k == "HOSTALIASES";
}

std::string a(const std::string& word) { return (std::string("aeiou").find(word[0]) != std::string::npos ? "an " : "a ") + word; }

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

}  // namespace

std::string check_base_url(const std::string& url) {
  std::string rest;
  if (url.rfind("https://", 0) == 0) rest = url.substr(8);
  else if (url.rfind("http://", 0) == 0) rest = url.substr(7);
  else return "must start with http:// or https://";
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash);
  if (authority.find('@') != std::string::npos) return "must not contain user info (put secrets in credentials)";
  std::string host, port;
  if (!authority.empty() && authority[0] == '[') {  // [IPv6]
    size_t close = authority.find(']');
    if (close == std::string::npos) return "the IPv6 address lacks its ']'";
    host = authority.substr(1, close - 1);
    std::string after = authority.substr(close + 1);
    if (!after.empty() && after[0] != ':') return "expected ':port' after the IPv6 address";
    if (!after.empty()) port = after.substr(1), after = ":";
    for (char c : host)
      if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.')) return "the IPv6 address is malformed";
    if (after == ":" && port.empty()) return "the port is empty";
  } else {
    size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return "the port is empty";
    }
    for (char c : host)
      if (!host_char(c)) return "the host may hold only letters, digits, '.', '-' and '_'";
  }
  if (host.empty()) return "the host is empty";
  if (!port.empty())
    if (auto e = check_port(port); !e.empty()) return e;
  for (char c : path) {
    if (c == '?' || c == '#') return "must not have a query or fragment";
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return "the path must not contain spaces or control characters";
  }
  return "";
}

std::string inference_problem(const std::string& type, const std::string& base_url) {
  const auto* prof = providers::find(type);
  if (!prof) return "its type '" + type + "' is unknown";
  if (prof->api == providers::ApiStyle::kNone) return a(type) + " provider serves no inference API";
  if (prof->default_base_url.empty() && base_url.empty())
    return a(type) + " provider serves inference only with a base_url (the server's API root, e.g. http://127.0.0.1:11434)";
  return "";
}

void normalize_provider(v1::Provider& p) {
  auto bad = [](const std::string& field, const std::string& why) {
    return Error(Code::kInvalidArgument, field + ": " + why, field);
  };
  if (auto e = providers::check_name(p.name()); !e.empty()) throw bad("name", "'" + p.name() + "' " + e);
  const auto* prof = providers::find(p.type());
  if (!prof)
    throw bad("type", p.type().empty() ? "required, one of " + providers::type_names()
                                       : "'" + p.type() + "' is not one of " + providers::type_names());
  for (const auto& [k, v] : p.credentials()) {
    const std::string field = "credentials." + k;
    if (auto e = providers::check_credential_key(k); !e.empty()) throw bad(field, "'" + k + "' " + e);
    // Non-inference credentials become the agent's environment.
    if (loader_variable(k)) throw bad(field, "not allowed (it would change how the agent's programs load code)");
    if (v.empty()) throw bad(field, "the value is empty");
  }
  std::string url = p.base_url();
  while (!url.empty() && url.back() == '/') url.pop_back();  // one spelling: routers append paths
  p.set_base_url(url);
  if (!url.empty())
    if (auto e = check_base_url(url); !e.empty()) throw bad("base_url", "'" + url + "' " + e);
  // Every type but generic is a named key; a generic one may be keyless (a local inference server).
  if (p.credentials().empty() && !prof->env_vars.empty())
    throw bad("credentials", a(p.type()) + " provider needs its key in " + join(prof->env_vars, " or ") +
                                 " (e.g. credentials." + prof->env_vars.front() + "; `bulwark provider create --from-env` reads it "
                                 "from your environment)");
}

v1::Provider masked(v1::Provider p) {
  for (auto& [k, v] : *p.mutable_credentials()) v = providers::mask(v);
  return p;
}

v1::ProviderEnvReply provider_env(const std::vector<v1::Provider>& ps) {
  v1::ProviderEnvReply out;
  for (const auto& p : ps) {
    const auto* prof = providers::find(p.type());
    if (!prof || prof->inference) continue;  // inference keys stay with the routers
    for (const auto& [k, v] : p.credentials()) out.mutable_env()->insert({k, v});  // the first provider keeps a name
    out.add_providers(p.name());
  }
  return out;
}

Providers::Providers(Store& store, const SecretBox& box, std::function<void(const std::string&)> changed)
    : store_(store), box_(box), changed_(std::move(changed)) {}

std::string Providers::seal(const std::string& name, const google::protobuf::Map<std::string, std::string>& creds) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : creds) j[k] = v;
  return box_.seal(j.dump(), name);
}

v1::Provider Providers::unseal(const ProviderRow& r) {
  v1::Provider p;
  p.set_name(r.name);
  p.set_type(r.type);
  p.set_base_url(r.base_url);
  *p.mutable_created_at() = timestamp(r.created_ms);
  *p.mutable_updated_at() = timestamp(r.updated_ms);
  std::string clear;
  try {
    clear = box_.open(r.sealed_credentials, r.name);
  } catch (const Error& e) {
    throw Error(e.code(), "provider '" + r.name + "': " + e.what());
  }
  auto j = nlohmann::json::parse(clear, nullptr, false);
  if (!j.is_object()) throw Error(Code::kInternal, "provider '" + r.name + "': the stored credentials are not a JSON object");
  for (const auto& [k, v] : j.items())
    if (v.is_string()) (*p.mutable_credentials())[k] = v.get<std::string>();
  return p;
}

ProviderRow Providers::existing(const std::string& name) {
  auto r = store_.find_provider(name);
  if (!r) throw Error(Code::kNotFound, "no provider named '" + name + "'", "name");
  return *r;
}

v1::Provider Providers::create(v1::Provider p) {
  normalize_provider(p);
  int64_t now = to_millis(now_timestamp());
  store_.insert_provider(ProviderRow{p.name(), p.type(), p.base_url(), seal(p.name(), p.credentials()), now, now});
  spdlog::info("provider {} ({}) created with {} credential(s)", p.name(), p.type(), p.credentials_size());
  *p.mutable_created_at() = timestamp(now);
  *p.mutable_updated_at() = timestamp(now);
  return masked(std::move(p));
}

v1::Provider Providers::get(const std::string& name) { return masked(unseal(existing(name))); }

std::vector<v1::Provider> Providers::list() {
  std::vector<v1::Provider> out;
  for (const auto& r : store_.list_providers()) out.push_back(masked(unseal(r)));
  return out;
}

v1::ProviderList Providers::list(const std::string& page_token, size_t limit) {
  std::string after = page_token.empty() ? "" : decode_provider_token(page_token);
  bool more = false;
  v1::ProviderList out;
  for (const auto& r : store_.list_providers(after, limit, &more)) *out.add_providers() = masked(unseal(r));
  if (more) out.set_next_page_token(encode_provider_token(out.providers(out.providers_size() - 1).name()));
  return out;
}

v1::Provider Providers::update(const std::string& name, const v1::Provider& patch, bool base_url_given) {
  if (!patch.name().empty() && patch.name() != name)
    throw Error(Code::kInvalidArgument, "name: a provider cannot be renamed (create one under the new name)", "name");
  if (base_url_given) {
    // Only base_url decides whether a provider can serve inference (its type never changes): an
    // inference route must not be left on one that no longer can.
    auto row = existing(name);
    std::string url = patch.base_url();
    while (!url.empty() && url.back() == '/') url.pop_back();
    if (auto why = inference_problem(row.type, url); !why.empty())
      if (auto use = store_.provider_use(name); !use.empty())
        throw Error(Code::kFailedPrecondition, "base_url: provider '" + name + "' is used by inference " + use +
                                                   ", and without that base_url " + why, "base_url");
  }
  v1::Provider result;
  auto after = store_.modify_provider(name, [&](ProviderRow& row) {
    if (!patch.type().empty() && patch.type() != row.type)
      throw Error(Code::kInvalidArgument, "type: " + a(row.type) + " provider cannot become " + patch.type() +
                                              " (delete it and create it again)", "type");
    // Merged under the store's lock, so two concurrent updates both count.
    v1::Provider cur = unseal(row);
    for (const auto& [k, v] : patch.credentials()) {
      if (v.empty()) cur.mutable_credentials()->erase(k);
      else (*cur.mutable_credentials())[k] = v;
    }
    if (base_url_given) cur.set_base_url(patch.base_url());
    normalize_provider(cur);
    row.base_url = cur.base_url();
    row.sealed_credentials = seal(name, cur.credentials());
    row.updated_ms = to_millis(now_timestamp());
    *cur.mutable_updated_at() = timestamp(row.updated_ms);
    result = std::move(cur);
    return true;
  });
  if (!after) throw Error(Code::kNotFound, "no provider named '" + name + "'", "name");
  spdlog::info("provider {} updated", name);
  if (changed_) changed_(name);
  return masked(std::move(result));
}

void Providers::remove(const std::string& name) {
  if (!store_.delete_provider(name)) throw Error(Code::kNotFound, "no provider named '" + name + "'", "name");
  spdlog::info("provider {} deleted", name);
  if (changed_) changed_(name);
}

v1::Provider Providers::resolve(const std::string& name) { return unseal(existing(name)); }

v1::ProviderEnvReply Providers::env(const std::string& sandbox_id) {
  auto s = store_.find(sandbox_id);
  // By id only: a name must not stand in for the sandbox the subject names.
  if (!s || s->sandbox_id() != sandbox_id) throw Error(Code::kNotFound, "no sandbox with id '" + sandbox_id + "'", "sandbox_id");
  std::vector<v1::Provider> ps;
  for (int i = 0; i < s->spec().providers_size(); ++i) {
    const std::string& name = s->spec().providers(i);
    auto r = store_.find_provider(name);
    if (!r)
      throw Error(Code::kNotFound, "provider '" + name + "' of sandbox " + sandbox_id + " no longer exists: create it again",
                  "providers[" + std::to_string(i) + "]");
    const auto* prof = providers::find(r->type);
    if (prof && prof->inference) continue;  // never opened for an agent's environment
    ps.push_back(unseal(*r));
  }
  return provider_env(ps);
}

size_t Providers::reseal() {
  size_t n = 0;
  for (const auto& r : store_.list_providers()) {
    if (box_.is_current(r.sealed_credentials)) continue;
    try {
      store_.modify_provider(r.name, [&](ProviderRow& row) {
        if (box_.is_current(row.sealed_credentials)) return false;
        row.sealed_credentials = box_.seal(box_.open(row.sealed_credentials, row.name), row.name);
        return true;
      });
      ++n;
    } catch (const Error& e) {
      // The gateway still starts: sandboxes do not need this provider, and its error names the fix.
      spdlog::error("provider {}: cannot re-seal its credentials: {}", r.name, e.what());
    }
  }
  if (n > 0)
    spdlog::info("re-sealed {} provider(s) with key {} of {}; older keys may now be removed from that file", n,
                 box_.current_key_id(), box_.path());
  return n;
}

}  // namespace bulwark::gateway
