#include "services/driver-vm/vm_state.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "shared/error.h"
#include "shared/proto_json.h"

namespace bulwark::vm {

std::string meta_to_json(const VmMeta& m) {
  nlohmann::json j = {
      {"sandbox_id", m.sandbox_id},
      {"driver_id", m.driver_id},
      {"spec", nlohmann::json::parse(message_to_json(m.spec))},
      {"image_id", m.image_id},
      {"base_disk", m.base_disk},
      {"image_env", m.image_env},
      {"stopped", m.stopped},
      {"created_ms", m.created_ms},
  };
  return j.dump(2) + "\n";
}

VmMeta meta_from_json(const std::string& text) {
  VmMeta m;
  try {
    auto j = nlohmann::json::parse(text);
    m.sandbox_id = j.at("sandbox_id").get<std::string>();
    m.driver_id = j.at("driver_id").get<std::string>();
    json_to_message(j.at("spec").dump(), &m.spec);
    m.image_id = j.value("image_id", "");
    m.base_disk = j.value("base_disk", "");
    m.image_env = j.value("image_env", std::vector<std::string>{});
    m.stopped = j.value("stopped", false);
    m.created_ms = j.value("created_ms", int64_t{0});
  } catch (const nlohmann::json::exception& e) {
    throw Error(Code::kInternal, std::string("meta.json is not what bulwark-driver-vm wrote: ") + e.what());
  }
  return m;
}

v1::WorkloadStatus status_of(const VmMeta& m, const Observed& o) {
  v1::WorkloadStatus st;
  st.set_sandbox_id(m.sandbox_id);
  st.set_workload_id(vm_name(m.sandbox_id));
  if (o.qemu_alive || o.booting) {
    st.set_running(true);
    return st;
  }
  st.set_exited(true);
  if (o.exit_code_file) {
    try {
      st.set_exit_code(std::stoi(*o.exit_code_file));
      return st;
    } catch (const std::exception&) {
      // A torn or garbled file: fall through to "ended without a code".
    }
  }
  if (m.stopped) {
    st.set_exit_code(143);  // as a container stopped with SIGTERM reports
    st.set_reason("stopped by the driver");
    return st;
  }
  st.set_exit_code(255);
  st.set_reason(o.console_has_panic ? "the guest kernel panicked; see console.log in the VM's state directory"
                                    : "the VM ended without the supervisor's exit code; see console.log in the VM's "
                                      "state directory");
  return st;
}

std::optional<pid_t> parse_pidfile(const std::string& text) {
  try {
    size_t used = 0;
    long v = std::stol(text, &used);
    if (v <= 1) return std::nullopt;
    for (size_t i = used; i < text.size(); ++i)
      if (!std::isspace(static_cast<unsigned char>(text[i]))) return std::nullopt;
    return static_cast<pid_t>(v);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

bool cmdline_is_vm(const std::string& cmdline, const std::string& sandbox_id, const VmPaths& p) {
  std::vector<std::string> args;
  std::string cur;
  for (char ch : cmdline) {
    if (ch == '\0') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(ch);
    }
  }
  if (!cur.empty()) args.push_back(cur);
  bool named = false, disk = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "-name" && i + 1 < args.size() && args[i + 1] == vm_name(sandbox_id)) named = true;
    if (args[i].find("file=" + p.disk() + ",") != std::string::npos) disk = true;
  }
  return named && disk;
}

std::optional<std::string> read_file_if(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file_atomic(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw Error(Code::kInternal, errno_text("open(" + tmp + ")", errno));
    f << content;
    if (!f.flush()) throw Error(Code::kInternal, errno_text("write(" + tmp + ")", errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw Error(Code::kInternal, errno_text("rename(" + path + ")", errno));
}

std::optional<pid_t> live_qemu(const std::string& sandbox_id, const VmPaths& p) {
  auto text = read_file_if(p.pidfile());
  if (!text) return std::nullopt;
  auto pid = parse_pidfile(*text);
  if (!pid) return std::nullopt;
  std::string proc = "/proc/" + std::to_string(*pid);
  auto cmdline = read_file_if(proc + "/cmdline");
  if (!cmdline || !cmdline_is_vm(*cmdline, sandbox_id, p)) return std::nullopt;
  // A QEMU that ended but was not reaped yet (its parent is whoever adopted the daemon) is gone.
  auto stat = read_file_if(proc + "/stat");
  if (stat) {
    auto close = stat->rfind(')');
    if (close != std::string::npos && close + 2 < stat->size() && ((*stat)[close + 2] == 'Z' || (*stat)[close + 2] == 'X'))
      return std::nullopt;
  }
  return pid;
}

Observed observe(const std::string& sandbox_id, const VmPaths& p) {
  Observed o;
  o.qemu_alive = live_qemu(sandbox_id, p).has_value();
  o.booting = !o.qemu_alive && ::access(p.boot_marker().c_str(), F_OK) == 0;
  if (!o.qemu_alive) {
    o.exit_code_file = read_file_if(p.exit_code());
    if (!o.exit_code_file) {
      auto console = read_file_if(p.console_log());
      o.console_has_panic = console && console->find("Kernel panic") != std::string::npos;
    }
  }
  return o;
}

}  // namespace bulwark::vm
