// bulwark-policy-service: answers health; policy storage and validation come with the live
// network policy issue. See README.md.
#include "shared/service.h"

int main(int argc, char** argv) {
  bulwark::Service svc("policy-service");
  return svc.run(argc, argv, [](bulwark::Bus& bus) {
    return std::make_unique<bulwark::NotImplemented>(
        bus, std::vector<std::string>{"bulwark.policy.>"}, "policy",
        "policy set/update/get/list/validate come with the live network policy issue");
  });
}
