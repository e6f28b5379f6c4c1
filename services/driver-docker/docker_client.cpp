#include "services/driver-docker/docker_client.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string_view>

#include <spdlog/spdlog.h>

#include "services/driver-docker/container_spec.h"
#include "shared/error.h"
#include "shared/util.h"

namespace bulwark::docker {

namespace {
// Every call names its version: a newer daemon answers 1.41 as 20.10 did.
constexpr const char* kApi = "/v1.41";

std::string docker_message(const httplib::Result& r) {
  if (!r) return httplib::to_string(r.error());
  try {
    auto j = nlohmann::json::parse(r->body);
    if (j.is_object() && j.contains("message") && j["message"].is_string()) return j["message"].get<std::string>();
  } catch (const std::exception&) {
  }
  return "HTTP " + std::to_string(r->status) + " " + r->body.substr(0, 200);
}


std::string query(const std::string& s) { return httplib::detail::encode_query_param(s); }

constexpr const char* kHowToStart =
    "start dockerd (`systemctl start docker`, or `dockerd -H unix:///var/run/docker.sock &`; "
    "`apt-get install -y docker.io` installs it), or point --docker-socket (or DOCKER_HOST=unix://PATH) at its socket";
}  // namespace

std::string default_socket() {
  const char* host = std::getenv("DOCKER_HOST");
  if (!host || !*host) return "/var/run/docker.sock";
  std::string h = host;
  if (h.rfind("unix://", 0) == 0) return h.substr(7);
  return "";
}

DockerClient::DockerClient(std::string socket_path) : socket_(std::move(socket_path)) {}

httplib::Result DockerClient::call(const std::string& what, const std::function<httplib::Result(httplib::Client&)>& fn) {
  // A fresh connection per call (a Unix socket connect is cheap), so calls run in parallel safely.
  httplib::Client http(socket_);
  http.set_address_family(AF_UNIX);
  // httplib would send the socket path as Host; any plain name does.
  http.set_default_headers({{"Host", "docker"}});
  http.set_connection_timeout(5);
  http.set_read_timeout(60);
  http.set_write_timeout(60);
  auto r = fn(http);
  if (!r)
    throw Error(Code::kUnavailable, "Docker Engine API at " + socket_ + " (" + what + "): " + httplib::to_string(r.error()) +
                                        "; is dockerd running on that socket? " + kHowToStart);
  return r;
}

void DockerClient::fail(const std::string& what, const httplib::Result& r) {
  Code c = Code::kInternal;
  if (r && r->status == 404) c = Code::kNotFound;
  if (r && r->status == 409) c = Code::kFailedPrecondition;
  if (r && r->status == 400) c = Code::kInvalidArgument;
  throw Error(c, "docker " + what + ": " + docker_message(r));
}

void DockerClient::ping() {
  struct stat st {};
  if (::stat(socket_.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode))
    throw Error(Code::kUnavailable, "no Docker socket at " + socket_ + ": " + kHowToStart);
  auto r = call("version", [](httplib::Client& c) { return c.Get("/version"); });
  if (r->status != 200) fail("version", r);
  // Versions compare as numbers: "1.9" < "1.41".
  std::string v = nlohmann::json::parse(r->body, nullptr, false).value("ApiVersion", "0.0");
  int major = 0, minor = 0;
  char dot = 0;
  std::istringstream(v) >> major >> dot >> minor;
  if (major < 1 || (major == 1 && minor < 41))
    throw Error(Code::kFailedPrecondition,
                "dockerd at " + socket_ + " speaks Engine API " + v + "; driver-docker needs 1.41 (Docker 20.10) or later");
}

bool DockerClient::image_exists(const std::string& image) {
  auto r = call("image inspect", [&](httplib::Client& c) { return c.Get(std::string(kApi) + "/images/" + url_path_escape(image) + "/json"); });
  if (r->status == 200) return true;
  if (r->status == 404) return false;
  fail("image inspect " + image, r);
}

void DockerClient::import_image(const std::string& tar, const std::string& image, const std::vector<std::string>& changes) {
  auto [repo, tag] = split_image(image);
  std::string path = std::string(kApi) + "/images/create?fromSrc=-&repo=" + query(repo) + "&tag=" + query(tag);
  for (const auto& ch : changes) path += "&changes=" + query(ch);
  auto r = call("import", [&](httplib::Client& c) { return c.Post(path, tar, "application/x-tar"); });
  if (r->status != 200) fail("import " + image, r);
  // 200 comes before the work is done: a failure arrives as an "error" line of the progress stream.
  std::istringstream lines(r->body);
  std::string line;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("error"))
      throw Error(Code::kInternal, "docker import " + image + ": " + j["error"].get<std::string>());
  }
}

std::string DockerClient::create_container(const std::string& name, const nlohmann::json& body) {
  auto text = body.dump();
  auto r = call("create", [&](httplib::Client& c) {
    return c.Post(std::string(kApi) + "/containers/create?name=" + query(name), text, "application/json");
  });
  if (r->status != 201) fail("create container " + name, r);
  return nlohmann::json::parse(r->body).at("Id").get<std::string>();
}

void DockerClient::start_container(const std::string& id) {
  auto r = call("start", [&](httplib::Client& c) { return c.Post(std::string(kApi) + "/containers/" + url_path_escape(id) + "/start"); });
  if (r->status != 204 && r->status != 304) fail("start container " + id, r);
}

std::optional<nlohmann::json> DockerClient::inspect_container(const std::string& id) {
  auto r = call("inspect", [&](httplib::Client& c) { return c.Get(std::string(kApi) + "/containers/" + url_path_escape(id) + "/json"); });
  if (r->status == 404) return std::nullopt;
  if (r->status != 200) fail("inspect container " + id, r);
  return nlohmann::json::parse(r->body);
}

bool DockerClient::stop_container(const std::string& id, int grace_s) {
  auto r = call("stop", [&](httplib::Client& c) {
    return c.Post(std::string(kApi) + "/containers/" + url_path_escape(id) + "/stop?t=" + std::to_string(grace_s));
  });
  if (r->status == 404) return false;
  if (r->status != 204 && r->status != 304) fail("stop container " + id, r);  // 304: already stopped
  return true;
}

bool DockerClient::remove_container(const std::string& id, int grace_s) {
  // Docker's forced remove is an immediate SIGKILL: stop first, so the supervisor can pass the
  // signal on and report the agent's end.
  try {
    if (!stop_container(id, grace_s)) return false;
  } catch (const Error& e) {
    spdlog::debug("stop before remove of {}: {}; removing by force", id, e.what());
  }
  auto r = call("remove", [&](httplib::Client& c) {
    return c.Delete(std::string(kApi) + "/containers/" + url_path_escape(id) + "?force=true&v=true");
  });
  if (r->status == 404) return false;
  // A concurrent remove of the same container (a repeated delete) is under way: it goes anyway.
  if (r->status == 409 && docker_message(r).find("already in progress") != std::string::npos) return true;
  if (r->status != 204 && r->status != 200) fail("remove container " + id, r);
  return true;
}

nlohmann::json DockerClient::list_containers(const std::string& label_filter) {
  std::string filters = nlohmann::json{{"label", {label_filter}}}.dump();
  auto r = call("list", [&](httplib::Client& c) {
    return c.Get(std::string(kApi) + "/containers/json?all=true&filters=" + query(filters));
  });
  if (r->status != 200) fail("list containers", r);
  auto j = nlohmann::json::parse(r->body);
  return j.is_array() ? j : nlohmann::json::array();
}

std::optional<nlohmann::json> DockerClient::inspect_network(const std::string& name) {
  auto r = call("network inspect", [&](httplib::Client& c) { return c.Get(std::string(kApi) + "/networks/" + url_path_escape(name)); });
  if (r->status == 404) return std::nullopt;
  if (r->status != 200) fail("network inspect " + name, r);
  return nlohmann::json::parse(r->body);
}

DockerClient::Network DockerClient::ensure_network(const std::string& name) {
  Network out;
  auto found = inspect_network(name);
  if (!found) {
    auto body = network_body(name).dump();
    auto r = call("network create", [&](httplib::Client& c) {
      return c.Post(std::string(kApi) + "/networks/create", body, "application/json");
    });
    // 409: another driver on this daemon created it meanwhile; use theirs.
    if (r->status != 201 && r->status != 409) fail("network create " + name, r);
    out.created = r->status == 201;
    found = inspect_network(name);
    if (!found) throw Error(Code::kInternal, "docker network " + name + " was created but cannot be found");
  }
  const auto& n = *found;
  out.id = n.value("Id", "");
  std::string driver = n.value("Driver", "");
  if (name == kHostNetwork || driver == "host") return out;
  if (driver != "bridge")
    throw Error(Code::kFailedPrecondition,
                "docker network '" + name + "' uses driver '" + driver + "': driver-docker needs a bridge network (or host)",
                "network");
  if (n.contains("IPAM") && n["IPAM"].contains("Config") && n["IPAM"]["Config"].is_array())
    for (const auto& cfg : n["IPAM"]["Config"])
      if (out.gateway.empty() && cfg.is_object() && cfg.contains("Gateway") && cfg["Gateway"].is_string() &&
          cfg["Gateway"].get<std::string>().find(':') == std::string::npos)
        out.gateway = cfg["Gateway"].get<std::string>();
  if (out.gateway.empty())
    throw Error(Code::kFailedPrecondition, "docker network '" + name + "' has no IPv4 gateway address", "network");
  return out;
}

}  // namespace bulwark::docker
