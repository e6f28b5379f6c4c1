#include "services/driver-docker/container_spec.h"

#include <cctype>
#include <cmath>
#include <map>

#include "shared/error.h"

namespace bulwark::docker {

std::vector<std::string> capabilities(const std::string& network) {
  // Docker's default set is dropped whole (CapDrop ALL); only these come back, each for a step of
  // the supervisor (supervisor/contain.cpp). The agent drops all of them before it runs.
  std::vector<std::string> caps = {
      "SYS_ADMIN",  // clone the agent's mount/PID/IPC/UTS/net namespaces, mount its /proc and tmpfs
      "NET_ADMIN",  // the veth pair, its addresses and routes, the agent's nftables firewall, nflog
      "SYS_PTRACE",  // the egress proxy reads the agent's /proc/<pid>/fd links and exe (another uid)
      // ... and enters /proc/<pid>/fd itself (mode 0500, the agent's uid). Not DAC_READ_SEARCH,
      // which would also grant open_by_handle_at (the "shocker" container escape).
      "DAC_OVERRIDE",
      "SETUID",   // the agent's init becomes the sandbox user (setresuid)
      "SETGID",   // ... and its group (setgroups, setresgid)
      "SETPCAP",  // init empties the bounding set (PR_CAPBSET_DROP) before the agent runs
      "KILL",     // the supervisor (root) forwards SIGTERM to the agent's init (the sandbox user)
      "NET_BIND_SERVICE",  // the sandbox's DNS responder listens on port 53 (transparent egress)
  };
  // Landlock's denials come from the kernel audit log, which the kernel delivers only to readers
  // in the host's network namespace. On a bridge the capability would read nothing; without it
  // the supervisor says so in the sandbox's confinement notes instead of logging nothing.
  if (network == kHostNetwork) caps.push_back("AUDIT_READ");
  return caps;
}

std::string container_name(const std::string& sandbox_id) { return "bulwark-" + sandbox_id; }

nlohmann::json container_body(const std::string& sandbox_id, const v1::SandboxSpec& spec, const ContainerConfig& c) {
  const std::string b = kBundleMount;
  // The supervisor runs through the bundled loader with the bundled libraries, so it works in any
  // image (busybox, distroless, another libc) without installing anything into it.
  nlohmann::json entrypoint = {b + "/lib/ld.so", "--library-path", b + "/lib", b + "/bin/bulwark-supervisor"};
  nlohmann::json cmd = nlohmann::json::array();
  // Providers attached: the agent must not start without their environment, which the supervisor
  // fetches from gateway-api itself. Their values never pass through here (nor docker's records).
  if (spec.providers_size() > 0) cmd = {"--provider-env", "required"};
  // The sandbox outlives its agent (exec, download) until deleted.
  if (spec.keep_after_exit()) cmd.push_back("--keep-after-exit=true");
  // The agent's own pseudo-terminal is the supervisor's to give (the container needs none).
  if (spec.tty()) cmd.push_back("--tty=true");
  cmd.push_back("--");
  for (const auto& a : spec.command()) cmd.push_back(a);

  // Sorted, so the same spec always makes the same body (the protobuf map has no order).
  std::map<std::string, std::string> env(spec.env().begin(), spec.env().end());
  // Set last so a user's env cannot point the supervisor elsewhere.
  env["BULWARK_SANDBOX_ID"] = sandbox_id;
  env["BULWARK_NATS_URL"] = c.nats_url;
  if (!spec.policy().empty()) env["BULWARK_POLICY_YAML"] = spec.policy();
  nlohmann::json env_list = nlohmann::json::array();
  for (const auto& [k, v] : env) env_list.push_back(k + "=" + v);

  nlohmann::json labels = {{kManagedLabel, "true"}, {kSandboxLabel, sandbox_id}, {kDriverLabel, c.driver_id},
                           {kNameLabel, spec.name()}};
  for (const auto& [k, v] : spec.labels()) labels["io.bulwark.label." + k] = v;

  nlohmann::json host = {
      {"Mounts", {{{"Type", "bind"}, {"Source", c.bundle_dir}, {"Target", b}, {"ReadOnly", true}}}},
      // The supervisor reaches NATS through the bridge's address on the host; the agent gets its
      // own network namespace from the supervisor, so it never sees this one.
      {"NetworkMode", c.network},
      {"CapDrop", {"ALL"}},
      {"CapAdd", capabilities(c.network)},
      // seccomp: the agent gets the supervisor's own filter (docs/seccomp.md), whose denials go
      // to a listener that logs them; docker's profile would answer some of the same calls first
      // (an ERRNO outranks a listener), silently and with other errnos, and it refuses the
      // unshare/mount calls the supervisor makes. apparmor: docker-default denies mount(2),
      // which builds the agent's mount namespace; the agent is confined by Landlock instead.
      {"SecurityOpt", {"seccomp=unconfined", "apparmor=unconfined"}},
      // Nothing masked or read-only under /proc (podman's unmask=ALL): a fresh /proc for the
      // agent's PID namespace may only be mounted where /proc is fully visible. Empty lists, not
      // absent ones: absent means docker's defaults.
      {"MaskedPaths", nlohmann::json::array()},
      {"ReadonlyPaths", nlohmann::json::array()},
      {"PidsLimit", c.pids_limit},
      // The supervisor is PID 1 and reaps; a failed sandbox is reported, never restarted.
      {"Init", false},
      {"RestartPolicy", {{"Name", "no"}}},
      {"AutoRemove", false},
      {"Privileged", false},
  };
  // The sandbox's own resources win over the driver's defaults.
  const auto& res = spec.resources();
  int64_t memory = res.memory_bytes() ? static_cast<int64_t>(res.memory_bytes()) : c.memory_bytes;
  int64_t nano_cpus = res.cpus() > 0 ? static_cast<int64_t>(res.cpus() * 1e9) : c.nano_cpus;
  int gpus = res.gpus() ? static_cast<int>(res.gpus()) : c.gpus;
  if (res.cpus() < 0 || (res.cpus() > 0 && nano_cpus < 1000000))
    throw Error(Code::kInvalidArgument, "resources.cpus must be 0.001 or more", "resources.cpus");
  if (memory > 0 && memory < 6 * 1024 * 1024)  // dockerd's floor
    throw Error(Code::kInvalidArgument, "resources.memory_bytes must be at least 6 MiB for docker", "resources.memory_bytes");
  if (res.pids()) host["PidsLimit"] = res.pids();
  if (memory > 0) {
    host["Memory"] = memory;
    host["MemorySwap"] = memory;  // the same: no swap beyond the limit
  }
  if (nano_cpus > 0) host["NanoCpus"] = nano_cpus;
  if (gpus > 0)
    host["DeviceRequests"] = nlohmann::json::array({{{"Driver", "nvidia"},
                                                     {"Count", gpus},
                                                     // OR of ANDs: any device that has "gpu"
                                                     {"Capabilities", nlohmann::json::array({{"gpu"}})}}});

  nlohmann::json body = {
      {"Image", spec.image()},
      {"Entrypoint", entrypoint},
      {"Cmd", cmd},
      {"Env", env_list},
      {"Labels", labels},
      {"AttachStdin", false},
      {"AttachStdout", false},
      {"AttachStderr", false},
      {"OpenStdin", false},
      {"Tty", false},
      {"HostConfig", host},
  };
  // Docker refuses a hostname together with the host's network namespace.
  if (c.network != kHostNetwork && !spec.name().empty()) body["Hostname"] = spec.name();
  return body;
}

nlohmann::json network_body(const std::string& name) {
  return {
      {"Name", name},
      {"Driver", "bridge"},
      {"CheckDuplicate", true},
      {"Internal", false},  // the supervisor's egress proxy goes out through it
      {"Labels", {{kManagedLabel, "true"}}},
  };
}

std::pair<std::string, std::string> split_image(const std::string& image) {
  auto slash = image.rfind('/');
  auto colon = image.rfind(':');
  if (colon == std::string::npos || (slash != std::string::npos && colon < slash)) return {image, "latest"};
  return {image.substr(0, colon), image.substr(colon + 1)};
}

int64_t parse_cpus(const std::string& text, const std::string& field) {
  if (text.empty()) return 0;
  size_t used = 0;
  double v = -1;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
  }
  if (used != text.size() || !std::isfinite(v) || v < 0 || v > 4096)
    throw Error(Code::kInvalidArgument, field + ": '" + text + "' is not a number of CPUs such as 0.5 or 2", field);
  return static_cast<int64_t>(std::llround(v * 1e9));
}

SandboxNatsUrl sandbox_nats_url(const std::string& url, const std::string& gateway) {
  SandboxNatsUrl out;
  size_t start = 0;
  while (start <= url.size()) {
    size_t comma = url.find(',', start);
    std::string one = url.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    // scheme://[user[:pass]@]host[:port]
    size_t scheme = one.find("://");
    size_t host_at = scheme == std::string::npos ? 0 : scheme + 3;
    size_t at = one.find('@', host_at);
    if (at != std::string::npos) host_at = at + 1;
    size_t host_end;
    if (host_at < one.size() && one[host_at] == '[') {
      host_end = one.find(']', host_at);
      host_end = host_end == std::string::npos ? one.size() : host_end + 1;
    } else {
      host_end = one.find_first_of(":/", host_at);
      if (host_end == std::string::npos) host_end = one.size();
    }
    std::string h = one.substr(host_at, host_end - host_at);
    bool loopback = h == "localhost" || h.rfind("127.", 0) == 0 || h == "[::1]" || h == "0.0.0.0" || h == "[::]";
    if (loopback && !gateway.empty()) {
      std::string port = "4222";  // NATS's default
      if (host_end < one.size() && one[host_end] == ':') {
        size_t port_end = one.find('/', host_end);
        port = one.substr(host_end + 1, port_end == std::string::npos ? std::string::npos : port_end - host_end - 1);
      }
      one.replace(host_at, host_end - host_at, gateway);
      out.rewritten.push_back(gateway + ":" + port);
    }
    out.url += (out.url.empty() ? "" : ",") + one;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace bulwark::docker
