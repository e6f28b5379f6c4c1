#include "supervisor/identity.h"

#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <vector>

#include "shared/error.h"

namespace bulwark::supervisor {

namespace {

std::optional<unsigned long> numeric(const std::string& s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  for (char c : s)
    if (c < '0' || c > '9') return std::nullopt;
  return std::stoul(s);
}

// Field 3 (id) of the line whose field 1 is name, in a passwd- or group-format file.
std::optional<unsigned long> lookup(const std::string& file, const std::string& name, int id_field) {
  std::ifstream f(file);
  std::string line;
  while (std::getline(f, line)) {
    std::vector<std::string> fields;
    std::stringstream ss(line);
    std::string x;
    while (std::getline(ss, x, ':')) fields.push_back(x);
    if (fields.size() > static_cast<size_t>(id_field) && fields[0] == name) return numeric(fields[id_field]);
  }
  return std::nullopt;
}

unsigned long resolve_one(const std::optional<std::string>& v, const std::string& file, const char* what) {
  std::string name = v.value_or("sandbox");
  unsigned long id;
  if (auto n = numeric(name)) id = *n;
  else if (auto found = lookup(file, name, 2)) id = *found;
  else if (name == "sandbox") id = kDefaultSandboxId;
  else throw Error(Code::kInvalidArgument, std::string(what) + " '" + name + "' is not in " + file, what);
  if (id == 0 || id >= 4294967295UL)
    throw Error(Code::kInvalidArgument, std::string(what) + " '" + name + "' resolves to id " + std::to_string(id) +
                                            ": the agent never runs as root", what);
  return id;
}

}  // namespace

Identity resolve_identity(const std::optional<std::string>& user, const std::optional<std::string>& group,
                          const std::string& passwd, const std::string& groups) {
  Identity id;
  id.uid = static_cast<uid_t>(resolve_one(user, passwd, "run_as_user"));
  id.gid = static_cast<gid_t>(resolve_one(group, groups, "run_as_group"));
  return id;
}

void drop_identity(const Identity& id) {
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
      throw Error(Code::kInternal, errno_text("drop capability " + std::to_string(cap) + " from the bounding set", errno));
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    throw Error(Code::kInternal, errno_text("clear ambient capabilities", errno));
  gid_t groups[1] = {id.gid};
  if (::setgroups(1, groups) != 0) throw Error(Code::kInternal, errno_text("setgroups", errno));
  if (::setresgid(id.gid, id.gid, id.gid) != 0) throw Error(Code::kInternal, errno_text("setresgid " + std::to_string(id.gid), errno));
  // From root to a non-zero uid with every id changed: the kernel clears the permitted and
  // effective capability sets.
  if (::setresuid(id.uid, id.uid, id.uid) != 0) throw Error(Code::kInternal, errno_text("setresuid " + std::to_string(id.uid), errno));
  if (::setuid(0) == 0 || ::setgid(0) == 0) throw Error(Code::kInternal, "dropping root did not stick: setuid(0) succeeded");
  // The inheritable set survives setuid; empty it too, so nothing is left for any exec.
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capset, &hdr, data) != 0) throw Error(Code::kInternal, errno_text("capset: clear every set", errno));
}

}  // namespace bulwark::supervisor
