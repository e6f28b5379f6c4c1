#pragma once
// A sandbox image as a VM disk. The image comes from a local container engine (podman or docker,
// both through the Docker-compatible Engine API on their Unix socket): a throwaway container of it
// is exported as a flat tarball, unpacked, and made into an ext4 file with `mkfs.ext4 -d` (no loop
// mount, no root-only tricks beyond keeping file owners). The ext4 is cached per image id under
// <state-dir>/images/; each sandbox gets a qcow2 overlay on it, so its writes stay its own and
// survive stop/start.
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace bulwark::vm {

struct ImageInfo {
  std::string id;                 // sha256:...
  std::vector<std::string> env;   // the image's Config.Env ("K=V")
};

class ImageSource {
 public:
  // socket: the engine's API socket; engine: "podman" or "docker" (for messages only).
  ImageSource(std::string socket, std::string engine);
  // Error(kFailedPrecondition, field "image") saying how to get the image there when it is missing;
  // kUnavailable saying how to start the engine when its socket does not answer.
  ImageInfo inspect(const std::string& image);
  // Writes the image's root filesystem as a tarball (create, export, remove a container).
  void export_rootfs(const std::string& image, const std::string& tar_path);
  const std::string& socket() const { return socket_; }

 private:
  std::string socket_, engine_;
};

// The ext4 size for a tree of `content_bytes`: the content, a quarter more for ext4's own
// structures, and `headroom` for the sandbox's writes (the file is sparse: unused space costs no disk).
uint64_t ext4_size(uint64_t content_bytes, uint64_t headroom);

class RootfsCache {
 public:
  RootfsCache(std::string dir, ImageSource& source, uint64_t headroom);
  // The ext4 of an image, built on first use (concurrent callers of one image wait for one build).
  std::string ensure(const ImageInfo& image, const std::string& image_name);

 private:
  std::string dir_;
  ImageSource& source_;
  uint64_t headroom_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<std::mutex>> building_;
};

// Runs a helper (tar, mkfs.ext4, qemu-img) to its end; throws Error with its output when it fails.
void run_tool(const std::vector<std::string>& argv, const std::string& what_to_install);

}  // namespace bulwark::vm
