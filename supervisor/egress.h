#pragma once
// Which host:port the agent may reach through the proxy: the policy's network_policies at L4.
// Pure. Binaries and L7 rules (method, path) are enforced by the live network policy work; here
// an endpoint allows its host and ports for every binary.
#include <cstdint>
#include <string>
#include <vector>

#include "shared/policy.h"

namespace bulwark::supervisor {

struct L4Decision {
  bool allow = false;
  std::string rule;    // "network_policies.<key>.endpoints[<i>]" that allowed it
  std::string reason;  // why it was denied
  std::vector<std::string> allowed_ips;  // the endpoint's allowed_ips (private/loopback exceptions)
  // The endpoint names one exact host: its name may resolve to a private address (the schema's
  // rule); a wildcard endpoint needs allowed_ips for that.
  bool exact_host = false;
};

// Schema host matching, case-insensitive: exact; "*" inside the first label matches within that
// label only ("*.example.com" = one label, "*-ai.example.com"); "**.example.com" = one or more labels.
bool host_matches(const std::string& pattern, const std::string& host);

L4Decision decide_l4(const policy::Policy& p, const std::string& host, uint16_t port);

}  // namespace bulwark::supervisor
