#include "services/driver-docker/backend.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include "services/driver-docker/state.h"
#include "shared/process.h"
#include "shared/util.h"

namespace bulwark::docker {

namespace {
// Whether something accepts TCP connections at "ip:port" within a second.
bool tcp_answers(const std::string& host_port) {
  auto colon = host_port.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (colon == std::string::npos || ::inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &a.sin_addr) != 1)
    return false;
  try {
    a.sin_port = htons(static_cast<uint16_t>(std::stoi(host_port.substr(colon + 1))));
  } catch (const std::exception&) {
    return false;
  }
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s) return false;
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return true;
  if (errno != EINPROGRESS) return false;
  pollfd p{s.get(), POLLOUT, 0};
  if (::poll(&p, 1, 1000) != 1) return false;
  int err = 0;
  socklen_t len = sizeof err;
  return ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
}
}  // namespace

DockerBackend::DockerBackend(BackendOptions o) : o_(std::move(o)), docker_(o_.socket_path) {
  docker_.ping();
  prepare_network();
}

void DockerBackend::prepare_network() {
  auto& c = o_.container;
  auto net = docker_.ensure_network(c.network);
  if (net.created) spdlog::info("created docker network {} (bridge, gateway {})", c.network, net.gateway);
  if (!o_.sandbox_nats_url.empty()) {
    c.nats_url = o_.sandbox_nats_url;
    return;
  }
  auto url = sandbox_nats_url(o_.nats_url, net.gateway);
  c.nats_url = url.url;
  // A nats-server bound to 127.0.0.1 only would leave every sandbox timing out in STARTING with
  // "its supervisor never checked in": say so now, at start.
  for (const auto& hp : url.rewritten)
    if (!tcp_answers(hp))
      throw Error(Code::kFailedPrecondition,
                  "sandboxes on docker network '" + c.network + "' would reach NATS at " + hp +
                      " (the network's gateway on this host, for the loopback address in --nats-url), but nothing answers "
                      "there: make nats-server listen on that address (or 0.0.0.0), set --sandbox-nats-url, or use "
                      "--network host");
  if (!url.rewritten.empty()) spdlog::info("sandboxes reach NATS at {}", c.nats_url);
}

void DockerBackend::capabilities(v1::DriverCapabilities& caps) const {
  set_container_capabilities(caps);  // GPUs: NVIDIA device requests; dockerd refuses them where no GPU runtime exists
}

std::vector<std::string> DockerBackend::validate(const v1::SandboxSpec& spec) {
  const auto& image = spec.image();
  if (image.empty()) throw Error(Code::kInvalidArgument, "spec.image is empty", "image");
  if (!docker_.image_exists(image))
    throw Error(Code::kInvalidArgument,
                "image '" + image + "' is not in dockerd's local store (no registry is used): import it with "
                "`docker import ROOTFS.tar " + image + "` or POST /images/create?fromSrc=- (services/driver-docker/README.md)",
                "image");
  container_body("validate", spec, o_.container);  // throws on limits docker cannot express
  return {};
}

v1::DriverCreateReply DockerBackend::adopt(const std::string& sandbox_id, const nlohmann::json& c) {
  std::string id = c.value("Id", "");
  // Created but never started (a driver that died between the two calls): start it now. One
  // that ran and ended stays ended; it is reported so.
  if (c.contains("State") && c["State"].value("Status", "") == "created") docker_.start_container(id);
  v1::DriverCreateReply r;
  r.set_workload_id(id);
  r.set_adopted(true);
  spdlog::info("sandbox {}: container {} already exists; adopted", sandbox_id, id.substr(0, 12));
  return r;
}

v1::DriverCreateReply DockerBackend::create(const std::string& id, const v1::SandboxSpec& spec) {
  std::string name = container_name(id);
  if (auto existing = docker_.inspect_container(name)) return adopt(id, *existing);
  validate(spec);
  std::string cid;
  try {
    cid = docker_.create_container(name, container_body(id, spec, o_.container));
  } catch (const Error& e) {
    // A concurrent create of the same sandbox won the name: adopt its container.
    if (auto existing = docker_.inspect_container(name)) return adopt(id, *existing);
    throw;
  }
  try {
    docker_.start_container(cid);
  } catch (const Error& e) {
    try {
      docker_.remove_container(cid, 0);
    } catch (const Error& cleanup) {
      spdlog::warn("sandbox {}: could not remove the container that did not start: {}", id, cleanup.what());
    }
    throw Error(e.code(), std::string("cannot start the sandbox container: ") + e.what());
  }
  spdlog::info("sandbox {}: container {} started from {}", id, cid.substr(0, 12), spec.image());
  v1::DriverCreateReply r;
  r.set_workload_id(cid);
  return r;
}

bool DockerBackend::remove(const std::string& sandbox_id) { return docker_.remove_container(container_name(sandbox_id)); }

bool DockerBackend::stop(const std::string& sandbox_id, std::chrono::milliseconds grace) {
  auto secs = static_cast<int>((grace.count() + 999) / 1000);
  return docker_.stop_container(container_name(sandbox_id), secs);
}

std::string DockerBackend::start(const std::string& sandbox_id) {
  auto c = docker_.inspect_container(container_name(sandbox_id));
  if (!c) throw Error(Code::kNotFound, "no container for sandbox " + sandbox_id + " to start", "sandbox_id");
  std::string id = c->value("Id", "");
  docker_.start_container(id);
  return id;
}

std::optional<v1::WorkloadStatus> DockerBackend::get(const std::string& sandbox_id) {
  auto c = docker_.inspect_container(container_name(sandbox_id));
  if (!c) return std::nullopt;
  auto st = status_from_inspect(*c);
  st.set_sandbox_id(sandbox_id);
  st.set_reason(exit_reason(*c));
  return st;
}

std::vector<v1::WorkloadStatus> DockerBackend::list() {
  std::vector<v1::WorkloadStatus> out;
  for (const auto& c : docker_.list_containers(std::string(kDriverLabel) + "=" + o_.container.driver_id)) {
    auto st = status_from_list(c);
    std::lock_guard lock(mu_);
    if (!st.exited()) {
      ended_.erase(st.workload_id());  // it may run again: inspect its next end anew
    } else if (auto it = ended_.find(st.workload_id()); it != ended_.end()) {
      st.set_exit_code(it->second.first);
      st.set_reason(it->second.second);
    } else if (auto inspected = docker_.inspect_container(st.workload_id())) {
      st.set_exit_code(status_from_inspect(*inspected).exit_code());
      st.set_reason(exit_reason(*inspected));
      ended_[st.workload_id()] = {st.exit_code(), st.reason()};
      spdlog::info("sandbox {}: container exited with code {}{}", st.sandbox_id(), st.exit_code(),
                   st.reason().empty() ? "" : " (" + st.reason() + ")");
    }
    out.push_back(std::move(st));
  }
  return out;
}

}  // namespace bulwark::docker
