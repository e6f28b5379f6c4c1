#include "services/policy-service/merge.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <set>

#include "shared/error.h"

namespace bulwark::policy_service {
namespace {

using YAML::Node;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Reads through a const Node: yaml-cpp's non-const operator[] would insert the key. A missing key
// gives an invalid node: fine to test and read, but it throws if rebound with reset(), so a
// variable that must point at a list made here is taken afterwards with the non-const [].
Node field(const Node& map, const std::string& key) { return map[key]; }

// map[key] as a list, made an empty one when absent or not a list.
Node list_at(Node map, const std::string& key) {
  if (Node cur = field(map, key); !cur || !cur.IsSequence()) map[key] = Node(YAML::NodeType::Sequence);
  return map[key];
}

std::string scalar(const Node& n) { return n && n.IsScalar() ? n.Scalar() : std::string(); }

// Equal as data: same type, same scalars, same keys with equal values in any order.
bool same(const Node& a, const Node& b) {
  if (a.Type() != b.Type()) return false;
  switch (a.Type()) {
    case YAML::NodeType::Scalar:
      return a.Scalar() == b.Scalar();
    case YAML::NodeType::Sequence:
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i)
        if (!same(a[i], b[i])) return false;
      return true;
    case YAML::NodeType::Map:
      if (a.size() != b.size()) return false;
      for (auto it = a.begin(); it != a.end(); ++it) {
        Node other = field(b, scalar(it->first));
        if (!other || !same(it->second, other)) return false;
      }
      return true;
    default:
      return true;  // null, undefined
  }
}

// Writes n keeping what the validator reads into: a quoted scalar stays quoted (yaml-cpp would
// print "1000" or "null" plain, changing its type), and flow collections stay flow.
void emit(YAML::Emitter& out, const Node& n, bool in_flow) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      // "?" is a plain scalar from a file, "" one built here; "!" was quoted, others explicitly tagged.
      if (!n.Tag().empty() && n.Tag() != "?") out << YAML::DoubleQuoted;
      out << n.Scalar();
      return;
    case YAML::NodeType::Sequence: {
      bool flow = in_flow || n.Style() == YAML::EmitterStyle::Flow;
      out << (flow ? YAML::Flow : YAML::Block) << YAML::BeginSeq;
      for (const auto& item : n) emit(out, item, flow);
      out << YAML::EndSeq;
      return;
    }
    case YAML::NodeType::Map: {
      bool flow = in_flow || n.Style() == YAML::EmitterStyle::Flow;
      out << (flow ? YAML::Flow : YAML::Block) << YAML::BeginMap;
      for (auto it = n.begin(); it != n.end(); ++it) {
        out << YAML::Key;
        emit(out, it->first, flow);
        out << YAML::Value;
        emit(out, it->second, flow);
      }
      out << YAML::EndMap;
      return;
    }
    default:
      out << YAML::Null;
  }
}

std::string position(const YAML::Mark& m) {
  return std::to_string(std::max(m.line, 0) + 1) + ":" + std::to_string(std::max(m.column, 0) + 1);
}

// A YAML map given inside an operation, e.g. endpoint_yaml. Problems name the field and carry the
// line:column inside the snippet.
Node snippet(const std::string& text, const std::string& field_name, const std::string& example) {
  if (text.empty()) throw Error(Code::kInvalidArgument, field_name + ": required, e.g. " + example, field_name);
  Node n;
  try {
    n = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(Code::kInvalidArgument, field_name + ":" + position(e.mark) + ": invalid YAML: " + e.msg, field_name);
  }
  if (!n.IsMap())
    throw Error(Code::kInvalidArgument, field_name + ": must be a YAML map such as " + example, field_name);
  return n;
}

// The ports an endpoint node lists under `port` or `ports` (ill-typed ones are the validator's).
std::vector<uint32_t> ports_of(const Node& ep) {
  std::vector<uint32_t> out;
  auto add = [&](const Node& n) {
    std::string s = scalar(n);
    if (!s.empty() && s.size() <= 5 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
      out.push_back(static_cast<uint32_t>(std::stoul(s)));
  };
  add(field(ep, "port"));
  if (Node ps = field(ep, "ports"); ps && ps.IsSequence())
    for (const auto& p : ps) add(p);
  return out;
}

bool same_host(const Node& ep, const std::string& host) { return lower(scalar(field(ep, "host"))) == lower(host); }

// Builds a sequence of seq's items but those at drop, in seq's style.
Node without(const Node& seq, const std::set<size_t>& drop) {
  Node out(YAML::NodeType::Sequence);
  out.SetStyle(seq.Style());
  for (size_t i = 0; i < seq.size(); ++i)
    if (!drop.count(i)) out.push_back(seq[i]);
  return out;
}

class Editor {
 public:
  explicit Editor(Node root) : root_(std::move(root)) {}

  void apply(const v1::PolicyOperation& op, const std::string& at) {
    switch (op.op_case()) {
      case v1::PolicyOperation::kAddEndpoint:
        return add_endpoint(op.add_endpoint(), at + ".add_endpoint");
      case v1::PolicyOperation::kRemoveEndpoint:
        return remove_endpoint(op.remove_endpoint(), at + ".remove_endpoint");
      case v1::PolicyOperation::kAddRule: {
        const auto& r = op.add_rule();
        return add_rule(r.network_policy(), r.host(), r.port(), r.rule_yaml(), r.deny(), at + ".add_rule");
      }
      case v1::PolicyOperation::kRemoveRule: {
        const auto& r = op.remove_rule();
        return remove_rule(r.network_policy(), r.host(), r.port(), r.rule_yaml(), r.deny(), at + ".remove_rule");
      }
      case v1::PolicyOperation::kRemoveNetworkPolicy:
        return remove_network_policy(op.remove_network_policy().network_policy(), at + ".remove_network_policy");
      default:
        throw Error(Code::kInvalidArgument,
                    at + ": empty operation: set one of add_endpoint, remove_endpoint, add_rule, remove_rule, "
                         "remove_network_policy",
                    at);
    }
  }

  const Node& root() const { return root_; }

 private:
  // network_policies, created when absent and create is set; nullopt when absent otherwise.
  std::optional<Node> policies(bool create) {
    Node nps = field(root_, "network_policies");
    if ((!nps || nps.IsNull()) && create) {
      root_["network_policies"] = Node(YAML::NodeType::Map);
      return field(root_, "network_policies");
    }
    if (nps && nps.IsMap()) return nps;
    return std::nullopt;
  }

  static std::string need_key(const std::string& key, const std::string& at) {
    if (key.empty())
      throw Error(Code::kInvalidArgument, at + ".network_policy: required: the network_policies key",
                  at + ".network_policy");
    return key;
  }

  // The key given, or, when empty, the one entry with an endpoint for host (and port unless 0).
  std::string resolve_key(const std::string& key, const std::string& host, uint32_t port, const std::string& at) {
    if (!key.empty()) return key;
    if (host.empty()) throw Error(Code::kInvalidArgument, at + ".host: required", at + ".host");
    std::vector<std::string> keys;
    if (auto nps = policies(false)) {
      for (const auto& kv : *nps) {
        Node eps = field(kv.second, "endpoints");
        for (size_t i = 0; eps && eps.IsSequence() && i < eps.size(); ++i) {
          if (!same_host(eps[i], host)) continue;
          auto ports = ports_of(eps[i]);
          if (port == 0 || std::find(ports.begin(), ports.end(), port) != ports.end()) {
            keys.push_back(kv.first.as<std::string>());
            break;
          }
        }
      }
    }
    std::string target = host + (port ? ":" + std::to_string(port) : "");
    if (keys.empty())
      throw Error(Code::kNotFound, "no network_policies entry has an endpoint for " + target, at + ".host");
    if (keys.size() > 1) {
      std::string names;
      for (const auto& k : keys) names += (names.empty() ? "" : ", ") + k;
      throw Error(Code::kInvalidArgument,
                  "network_policies entries " + names + " all have an endpoint for " + target + ": give network_policy",
                  at + ".network_policy");
    }
    return keys.front();
  }

  // The existing network policy under key; not_found naming the key otherwise.
  Node existing(const std::string& key, const std::string& at) {
    need_key(key, at);
    auto nps = policies(false);
    if (nps)
      if (Node np = field(*nps, key); np && np.IsMap()) return np;
    throw Error(Code::kNotFound, "network_policies has no entry '" + key + "'", at + ".network_policy");
  }

  void add_endpoint(const v1::AddEndpoint& op, const std::string& at) {
    const std::string key = need_key(op.network_policy(), at);
    Node ep = snippet(op.endpoint_yaml(), at + ".endpoint_yaml", "{host: api.example.com, port: 443}");
    for (int i = 0; i < op.binaries_size(); ++i)
      if (op.binaries(i).empty())
        throw Error(Code::kInvalidArgument, at + ".binaries[" + std::to_string(i) + "]: must be a path",
                    at + ".binaries");
    auto found = policies(true);
    if (!found) throw Error(Code::kFailedPrecondition, "network_policies is not a map in the latest version", at);
    Node nps = *found;
    if (Node np = field(nps, key); !np || np.IsNull()) {
      if (op.binaries().empty())
        throw Error(Code::kInvalidArgument,
                    "network_policies." + key + " is new: give the binaries allowed to use it (e.g. /usr/bin/curl)",
                    at + ".binaries");
      Node fresh(YAML::NodeType::Map);
      Node eps(YAML::NodeType::Sequence);
      eps.push_back(ep);
      fresh["endpoints"] = eps;
      fresh["binaries"] = Node(YAML::NodeType::Sequence);
      nps[key] = fresh;
    } else {
      if (!np.IsMap()) throw Error(Code::kFailedPrecondition, "network_policies." + key + " is not a map", at);
      const std::string host = scalar(field(ep, "host"));
      const auto ports = ports_of(ep);
      Node eps = field(np, "endpoints");
      if (eps && eps.IsSequence() && !host.empty()) {
        for (size_t i = 0; i < eps.size(); ++i) {
          if (!same_host(eps[i], host)) continue;
          for (uint32_t p : ports_of(eps[i]))
            if (std::find(ports.begin(), ports.end(), p) != ports.end())
              throw Error(Code::kAlreadyExists,
                          "network_policies." + key + ".endpoints[" + std::to_string(i) + "] already opens " +
                              scalar(field(eps[i], "host")) + ":" + std::to_string(p) +
                              ": remove it first, or add rules to it",
                          at + ".endpoint_yaml");
        }
      }
      list_at(np, "endpoints").push_back(ep);
    }
    if (!op.binaries().empty()) add_binaries(list_at(nps[key], "binaries"), op);
  }

  static void add_binaries(Node bins, const v1::AddEndpoint& op) {
    for (const auto& path : op.binaries()) {
      bool present = false;
      for (const auto& b : bins) present = present || scalar(field(b, "path")) == path;
      if (present) continue;
      Node b(YAML::NodeType::Map);
      b["path"] = path;
      b.SetStyle(YAML::EmitterStyle::Flow);
      bins.push_back(b);
    }
  }

  void remove_endpoint(const v1::RemoveEndpoint& given, const std::string& at) {
    v1::RemoveEndpoint op = given;
    op.set_network_policy(resolve_key(op.network_policy(), op.host(), op.port(), at));
    Node np = existing(op.network_policy(), at);
    if (op.host().empty()) throw Error(Code::kInvalidArgument, at + ".host: required", at + ".host");
    Node eps = field(np, "endpoints");
    std::set<size_t> drop;
    for (size_t i = 0; eps && eps.IsSequence() && i < eps.size(); ++i) {
      if (!same_host(eps[i], op.host())) continue;
      auto ports = ports_of(eps[i]);
      if (op.port() == 0 || std::find(ports.begin(), ports.end(), op.port()) != ports.end()) drop.insert(i);
    }
    const std::string where = "network_policies." + op.network_policy();
    if (drop.empty())
      throw Error(Code::kNotFound,
                  where + " has no endpoint for " + op.host() + (op.port() ? ":" + std::to_string(op.port()) : ""),
                  at + ".host");
    if (drop.size() == eps.size())
      throw Error(Code::kFailedPrecondition,
                  "that would leave " + where + " without endpoints: remove the whole entry with remove_network_policy",
                  at + ".host");
    np["endpoints"] = without(eps, drop);
  }

  // The one endpoint of np for host (and port, unless 0).
  Node endpoint(Node np, const std::string& key, const std::string& host, uint32_t port, const std::string& at) {
    if (host.empty()) throw Error(Code::kInvalidArgument, at + ".host: required", at + ".host");
    Node eps = field(np, "endpoints");
    std::vector<size_t> hits;
    for (size_t i = 0; eps && eps.IsSequence() && i < eps.size(); ++i) {
      if (!same_host(eps[i], host)) continue;
      auto ports = ports_of(eps[i]);
      if (port == 0 || std::find(ports.begin(), ports.end(), port) != ports.end()) hits.push_back(i);
    }
    const std::string where = "network_policies." + key;
    std::string target = host + (port ? ":" + std::to_string(port) : "");
    if (hits.empty()) throw Error(Code::kNotFound, where + " has no endpoint for " + target, at + ".host");
    if (hits.size() > 1)
      throw Error(Code::kInvalidArgument,
                  where + " has " + std::to_string(hits.size()) + " endpoints for " + target + ": give port",
                  at + ".port");
    return eps[hits[0]];
  }

  // What add_rule and remove_rule work on: the entry's key, the endpoint and the parsed rule.
  struct RuleTarget {
    std::string key;
    Node ep, rule;
    const char* list_key;
  };
  RuleTarget rule_target(const std::string& given_key, const std::string& host, uint32_t port,
                         const std::string& rule_yaml, bool deny, const std::string& at) {
    const std::string key = resolve_key(given_key, host, port, at);
    Node np = existing(key, at);
    return {key, endpoint(np, key, host, port, at), snippet(rule_yaml, at + ".rule_yaml", "{method: GET, path: /repos/**}"),
            deny ? "deny_rules" : "rules"};
  }

  void add_rule(const std::string& given_key, const std::string& host, uint32_t port, const std::string& rule_yaml,
                bool deny, const std::string& at) {
    auto [key, ep, rule, list_key] = rule_target(given_key, host, port, rule_yaml, deny, at);
    // An allow rule sits under `- allow:`, a deny rule is the list item itself. (Never assign to
    // a yaml-cpp Node that refers into a tree: that rewrites the tree; reset() rebinds.)
    Node entry(YAML::NodeType::Map);
    if (deny)
      entry.reset(rule);
    else
      entry["allow"] = rule;
    Node rules = field(ep, list_key);
    if (rules && rules.IsSequence())
      for (const auto& r : rules)
        if (same(r, entry))
          throw Error(Code::kAlreadyExists,
                      "network_policies." + key + ": the endpoint for " + host + " already has this rule",
                      at + ".rule_yaml");
    list_at(ep, list_key).push_back(entry);
    ep.SetStyle(YAML::EmitterStyle::Block);  // rules read better as a block than as one flow line
  }

  void remove_rule(const std::string& given_key, const std::string& host, uint32_t port, const std::string& rule_yaml,
                   bool deny, const std::string& at) {
    auto [key, ep, rule, list_key] = rule_target(given_key, host, port, rule_yaml, deny, at);
    Node rules = field(ep, list_key);
    std::set<size_t> drop;
    for (size_t i = 0; rules && rules.IsSequence() && i < rules.size(); ++i) {
      Node candidate = deny ? rules[i] : field(rules[i], "allow");
      if (candidate && same(candidate, rule)) drop.insert(i);
    }
    if (drop.empty())
      throw Error(Code::kNotFound,
                  "network_policies." + key + ": the endpoint for " + host + " has no such " +
                      (deny ? "deny rule" : "allow rule"),
                  at + ".rule_yaml");
    if (drop.size() == rules.size())
      ep.remove(list_key);  // no empty list: the validator reads `rules: []` as "allow nothing"
    else
      ep[list_key] = without(rules, drop);
  }

  void remove_network_policy(const std::string& key, const std::string& at) {
    existing(key, at);
    policies(false)->remove(key);
  }

  Node root_;
};

}  // namespace

bool is_sandbox_id(const std::string& s) {
  return s.size() == 16 &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

void check_sandbox_id(const std::string& s) {
  if (!is_sandbox_id(s))
    throw Error(Code::kInvalidArgument,
                "sandbox_id must be 16 lowercase hex digits (as the gateway makes them), got '" + s.substr(0, 40) + "'",
                "sandbox_id");
}

std::string apply_operations(const std::string& yaml,
                             const google::protobuf::RepeatedPtrField<v1::PolicyOperation>& ops) {
  if (ops.empty()) throw Error(Code::kInvalidArgument, "operations: give at least one operation", "operations");
  Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw Error(Code::kFailedPrecondition,
                "the latest version does not parse as YAML (" + e.msg + "): set a whole policy");
  }
  if (!root.IsMap()) throw Error(Code::kFailedPrecondition, "the latest version is not a YAML map: set a whole policy");
  Editor ed(root);
  YAML::Emitter out;
  try {
    for (int i = 0; i < ops.size(); ++i) ed.apply(ops[i], "operations[" + std::to_string(i) + "]");
    emit(out, ed.root(), false);
  } catch (const YAML::Exception& e) {
    // A yaml-cpp misuse here, not a bad request: say so rather than pass its bare text on.
    throw Error(Code::kInternal, "editing the policy YAML failed: " + std::string(e.what()));
  }
  if (!out.good()) throw Error(Code::kInternal, "cannot write the updated policy as YAML: " + out.GetLastError());
  return std::string(out.c_str()) + "\n";
}

policy::Policy parse_or_throw(const std::string& yaml, const std::string& filename, const std::string& field_name) {
  if (yaml.size() > kMaxYamlBytes)
    throw Error(Code::kPayloadTooLarge,
                "the policy is " + std::to_string(yaml.size()) + " bytes; policy-service stores at most " +
                    std::to_string(kMaxYamlBytes),
                field_name);
  try {
    return policy::parse_policy(yaml, filename);
  } catch (const policy::PolicyInvalid& e) {
    std::string msg = "the policy is invalid: ";
    for (size_t i = 0; i < e.problems.size(); ++i) msg += (i ? "; " : "") + e.problems[i].to_string();
    throw Error(Code::kInvalidArgument, msg, field_name);
  }
}

void check_static_sections(const policy::Policy& live, const policy::Policy& next) {
  auto changed = policy::changed_static_sections(live, next);
  if (changed.empty()) return;
  std::string names;
  for (size_t i = 0; i < changed.size(); ++i)
    names += (i == 0 ? "" : i + 1 == changed.size() ? " and " : ", ") + changed[i];
  throw Error(Code::kFailedPrecondition,
              names + (changed.size() == 1 ? " differs" : " differ") +
                  " from the sandbox's version 1: filesystem_policy, landlock and process are applied once, before "
                  "the agent starts, and cannot change on a live sandbox; keep them as they are, or create a new "
                  "sandbox with the new ones",
              changed.front());
}

std::vector<policy::Problem> static_section_problems(const policy::Policy& live, const policy::Policy& next,
                                                     const std::string& next_yaml, const std::string& filename) {
  std::vector<policy::Problem> out;
  auto changed = policy::changed_static_sections(live, next);
  if (changed.empty()) return out;
  Node root;
  try {
    root = YAML::Load(next_yaml);
  } catch (const YAML::Exception&) {
    // next parsed already; stay at 1:1 should yaml-cpp disagree with itself
  }
  for (const auto& section : changed) {
    policy::Problem p{filename, 1, 1, section,
                      "differs from the sandbox's version 1: applied once, before the agent starts, it cannot "
                      "change on a live sandbox"};
    if (root.IsMap())
      for (auto it = root.begin(); it != root.end(); ++it)
        if (scalar(it->first) == section) {
          p.line = it->first.Mark().line + 1;
          p.column = it->first.Mark().column + 1;
        }
    out.push_back(std::move(p));
  }
  return out;
}

v1::PolicyProblem to_proto(const policy::Problem& p) {
  v1::PolicyProblem out;
  out.set_file(p.file);
  out.set_line(p.line);
  out.set_column(p.column);
  out.set_path(p.path);
  out.set_message(p.message);
  return out;
}

}  // namespace bulwark::policy_service
