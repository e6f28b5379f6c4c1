#pragma once
// Route tables for the router's tests, written compactly: config("any", {{"gpt-*", {{provider,
// model, privacy, cost}, ...}}, ...}).
#include <string>
#include <utility>
#include <vector>

#include "bulwark/v1/inference.pb.h"

namespace bulwark::privacy_router::testing {

struct B {
  std::string provider;
  std::string model;
  std::string privacy;
  double cost;
};

inline v1::InferenceConfig config(const std::string& privacy, std::vector<std::pair<std::string, std::vector<B>>> routes) {
  v1::InferenceConfig c;
  c.set_privacy(privacy);
  for (auto& [match, backends] : routes) {
    auto* r = c.add_routes();
    r->set_match(match);
    for (auto& b : backends) {
      auto* x = r->add_backends();
      x->set_provider(b.provider);
      x->set_model(b.model);
      x->set_privacy(b.privacy);
      x->set_cost(b.cost);
    }
  }
  return c;
}

}  // namespace bulwark::privacy_router::testing
