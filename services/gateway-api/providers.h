#pragma once
// Providers: named credentials of one type (shared/providers.h), owned by the gateway. Stored
// sealed (SecretBox); REST only ever sees them masked; clear values leave only through resolve
// (privacy-routers) and env (a sandbox's supervisor, non-inference types only).
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bulwark/v1/inference.pb.h"
#include "services/gateway-api/secret_box.h"
#include "services/gateway-api/store.h"
#include "shared/providers.h"

namespace bulwark::gateway {

// "" when url is http(s)://host[:port][/path] (no user info, query or fragment), else the problem.
std::string check_base_url(const std::string& url);
// "" when a provider of this type and base_url can serve inference.local (an API style, and a base
// URL of its own or its type's), else why not.
std::string inference_problem(const std::string& type, const std::string& base_url);
// Checks a provider as a client sent it (name, type, credential keys and values, base_url; a type
// other than generic needs a credential), each error naming its field. Strips a trailing '/' from
// base_url. Pure.
void normalize_provider(v1::Provider& p);
// Every credential value replaced by providers::mask.
v1::Provider masked(v1::Provider p);
// The environment a sandbox's agent gets from its providers: the credentials of those whose type is
// not an inference type, in the order listed (the first provider to set a variable keeps it). Pure.
v1::ProviderEnvReply provider_env(const std::vector<v1::Provider>& providers);

class Providers {
 public:
  // changed(name) runs after an update or delete (the gateway publishes it to the routers).
  Providers(Store& store, const SecretBox& box, std::function<void(const std::string&)> changed = {});

  // REST: every reply is masked. Errors name the field (name, type, credentials.KEY, base_url).
  v1::Provider create(v1::Provider p);
  v1::Provider get(const std::string& name);
  std::vector<v1::Provider> list();
  // One page by name (paging.h): page_token "" for the first.
  v1::ProviderList list(const std::string& page_token, size_t limit);
  // credentials are merged (a value "" removes that key); base_url is replaced when base_url_given.
  // name and type, if set, must be the provider's own (a type does not change).
  v1::Provider update(const std::string& name, const v1::Provider& patch, bool base_url_given);
  void remove(const std::string& name);

  // NATS: clear credentials.
  v1::Provider resolve(const std::string& name);
  // For the supervisor of sandbox_id (a sandbox_id, never a name).
  v1::ProviderEnvReply env(const std::string& sandbox_id);

  // At start: re-seal with the current key every row sealed with an older one (key rotation).
  // Returns how many were re-sealed; a row that cannot be opened is logged and left as is.
  size_t reseal();

 private:
  v1::Provider unseal(const ProviderRow& r);
  std::string seal(const std::string& name, const google::protobuf::Map<std::string, std::string>& creds);
  ProviderRow existing(const std::string& name);

  Store& store_;
  const SecretBox& box_;
  std::function<void(const std::string&)> changed_;
};

}  // namespace bulwark::gateway
