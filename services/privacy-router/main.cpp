// bulwark-privacy-router: answers health; inference routing comes with the privacy router issue.
// See README.md.
#include "shared/service.h"

int main(int argc, char** argv) {
  bulwark::Service svc("privacy-router");
  return svc.run(argc, argv, [](bulwark::Bus& bus) {
    return std::make_unique<bulwark::NotImplemented>(
        bus, std::vector<std::string>{"bulwark.inference.>"}, "privacy-router",
        "inference routing through inference.local comes with the privacy router issue");
  });
}
