// bulwark-policy-service: stores, validates and versions sandbox policies in JetStream KV, and
// answers policy set/update/get/list/validate. See README.md.
#include "services/policy-service/api.h"

int main(int argc, char** argv) {
  bulwark::Service svc("policy-service");
  bulwark::policy_service::ApiOptions o;
  double max_wait_s = 300;
  svc.flags()
      .integer("workers", &o.workers, "requests handled at once (a write waiting for an ack holds none)", 1, 256)
      .seconds("max-wait", &max_wait_s, "the longest wait for a sandbox's ack a write may ask for", 0, 3600)
      .integer("kv-replicas", &o.store.replicas, "replicas of the KV buckets when this service creates them", 1, 5);
  return svc.run(argc, argv, [&](bulwark::Bus& bus) {
    o.max_wait = std::chrono::milliseconds(static_cast<int64_t>(max_wait_s * 1000));
    return std::make_unique<bulwark::policy_service::PolicyApi>(bus, o);
  });
}
