#include "supervisor/mounts.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "shared/error.h"
#include "shared/process.h"

namespace bulwark::supervisor {
namespace {

void sys(bool ok, const std::string& what) {
  if (!ok) throw Error(Code::kInternal, errno_text("mounts: " + what, errno));
}

bool beneath(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() + 1 && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

// mkdir -p for the skeleton inside the fresh tmpfs.
void make_parents(const std::string& path) {
  std::string cur;
  size_t pos = 1;
  while ((pos = path.find('/', pos)) != std::string::npos) {
    cur = path.substr(0, pos);
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) sys(false, "mkdir " + cur);
    ++pos;
  }
}

struct Kept {
  std::string path;
  Fd fd;  // O_PATH, opened before the cover hides it
  bool dir;
};

}  // namespace

const std::vector<std::string>& shared_dirs() {
  static const std::vector<std::string> dirs = {"/tmp", "/var/tmp", "/run", "/dev/shm"};
  return dirs;
}

void hide_shared_dirs(const std::vector<std::string>& keep) {
  for (const auto& dir : shared_dirs()) {
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;  // absent, or a symlink to one of the others
    // Opened beneath the directory with no symlink followed at any step: the directory is
    // shared with every host user, and root must not be steered to bind something else by a
    // component swapped for a symlink. A policy path with a symlink in it (or the `..` of an
    // unnormalised one) is not bound back; it is then missing in the sandbox, which the Landlock
    // step reports (best_effort) or refuses (hard_requirement).
    Fd dirfd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dirfd) continue;
    std::vector<Kept> kept;
    for (const auto& k : keep) {
      if (!beneath(k, dir)) continue;
      open_how how{};
      how.flags = O_PATH | O_CLOEXEC;
      how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
      std::string rel = k.substr(dir.size() + 1);
      long fd = ::syscall(SYS_openat2, dirfd.get(), rel.c_str(), &how, sizeof how);
      if (fd < 0) continue;
      struct stat ks {};
      ::fstat(static_cast<int>(fd), &ks);
      kept.push_back({k, Fd(static_cast<int>(fd)), S_ISDIR(ks.st_mode)});
    }
    // Parents first, so a nested path is bound inside its parent's bind.
    std::sort(kept.begin(), kept.end(), [](const Kept& a, const Kept& b) { return a.path < b.path; });
    // Bounded: these were disk on the host; as tmpfs they are memory, which an agent allowed to
    // write there must not be able to exhaust.
    const char* mode = dir == "/run" ? "mode=0755,size=64m,nr_inodes=16k" : "mode=1777,size=1g,nr_inodes=256k";
    sys(::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, mode) == 0, "cover " + dir + " with a private tmpfs");
    for (const auto& k : kept) {
      make_parents(k.path);
      struct stat ts {};
      if (::lstat(k.path.c_str(), &ts) != 0) {
        if (k.dir) {
          sys(::mkdir(k.path.c_str(), 0755) == 0, "mkdir " + k.path);
        } else {
          int f = ::open(k.path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
          sys(f >= 0, "create the mount point " + k.path);
          ::close(f);
        }
      }
      std::string src = "/proc/self/fd/" + std::to_string(k.fd.get());
      sys(::mount(src.c_str(), k.path.c_str(), nullptr, MS_BIND | MS_REC, nullptr) == 0, "bind " + k.path + " back");
    }
  }
}

}  // namespace bulwark::supervisor
