#pragma once
// A small client for the Docker Engine API (v1.41, Docker 20.10 and later) over its Unix socket:
// HTTP on a fresh connection per call, no `docker` process per call. Every failure is an Error
// naming the call and the daemon's own message.
#include <httplib.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace bulwark::docker {

// Where the socket is when nothing says otherwise: DOCKER_HOST=unix://PATH, else
// /var/run/docker.sock. "" when DOCKER_HOST names something else (tcp://...), which this client
// cannot speak to.
std::string default_socket();

class DockerClient {
 public:
  explicit DockerClient(std::string socket_path);
  const std::string& socket() const { return socket_; }

  // Throws Error(kUnavailable) saying how to start dockerd, or (kFailedPrecondition) when the
  // daemon is older than API 1.41.
  void ping();
  bool image_exists(const std::string& image);
  // POST /images/create?fromSrc=-: a root filesystem tarball becomes `image` (docker import).
  void import_image(const std::string& tar, const std::string& image, const std::vector<std::string>& changes = {});
  std::string create_container(const std::string& name, const nlohmann::json& body);  // the container id
  void start_container(const std::string& id);  // already running is fine
  std::optional<nlohmann::json> inspect_container(const std::string& name_or_id);
  // SIGTERM, then SIGKILL after grace_s; false when there is no such container.
  bool stop_container(const std::string& name_or_id, int grace_s);
  // SIGTERM, `grace` seconds, SIGKILL, then remove with its anonymous volumes. False when it did
  // not exist.
  bool remove_container(const std::string& name_or_id, int grace_s = 5);
  nlohmann::json list_containers(const std::string& label_filter);  // every state

  struct Network {
    std::string id;
    std::string gateway;  // the bridge's address on the host ("" for host)
    bool created = false;
  };
  // The named network, created as a labelled bridge when missing. "host" is the host's network
  // namespace. An existing network must be a bridge.
  Network ensure_network(const std::string& name);

 private:
  httplib::Result call(const std::string& what, const std::function<httplib::Result(httplib::Client&)>& fn);
  [[noreturn]] void fail(const std::string& what, const httplib::Result& r);
  std::optional<nlohmann::json> inspect_network(const std::string& name);

  std::string socket_;
};

}  // namespace bulwark::docker
