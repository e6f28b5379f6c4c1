// bulwark-driver-vm: answers health; its backend is not built yet. See README.md.
#include "shared/service.h"

int main(int argc, char** argv) {
  return bulwark::run_pending_driver(argc, argv, "vm", "the QEMU microVM driver comes with the compute-drivers issue");
}
