#pragma once
// A small client for the Podman REST API (libpod v4) over its Unix socket: one HTTP connection,
// no `podman` process per call. Every failure is an Error naming the call and podman's message.
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace bulwark::podman {

class PodmanClient {
 public:
  explicit PodmanClient(std::string socket_path);

  void ping();  // throws Error(kUnavailable) saying how to start the service
  bool image_exists(const std::string& image);
  std::string create_container(const nlohmann::json& spec);  // returns the container id
  void start_container(const std::string& id);               // already running is fine
  std::optional<nlohmann::json> inspect_container(const std::string& name_or_id);
  // SIGTERM, then SIGKILL after grace_s; false when there is no such container.
  bool stop_container(const std::string& name_or_id, int grace_s);
  bool remove_container(const std::string& name_or_id);  // force; false when it did not exist
  nlohmann::json list_containers(const std::string& label_filter);  // all states

 private:
  // A fresh connection per call (a Unix socket connect is cheap), so calls run in parallel safely.
  httplib::Result call(const std::string& what, const std::function<httplib::Result(httplib::Client&)>& fn);
  [[noreturn]] void fail(const std::string& what, const httplib::Result& r);

  std::string socket_;
};

}  // namespace bulwark::podman
