// bulwark-driver-docker: answers health; its backend is not built yet. See README.md.
#include "shared/service.h"

int main(int argc, char** argv) {
  return bulwark::run_pending_driver(argc, argv, "docker", "the Docker Engine driver comes with the compute-drivers issue");
}
