#include "services/driver-podman/podman_client.h"

#include <sys/socket.h>

#include "shared/error.h"

namespace bulwark::podman {

namespace {
constexpr const char* kApi = "/v4.0.0/libpod";

std::string podman_message(const httplib::Result& r) {
  if (!r) return httplib::to_string(r.error());
  try {
    auto j = nlohmann::json::parse(r->body);
    if (j.is_object() && j.contains("message")) return j["message"].get<std::string>();
  } catch (const std::exception&) {
  }
  return "HTTP " + std::to_string(r->status) + " " + r->body.substr(0, 200);
}

// Podman answers 500 "no such container" when a container vanishes during the call (a concurrent
// remove): that is a 404 for our purposes.
bool gone(const httplib::Result& r) {
  return r->status == 404 || (r->status == 500 && r->body.find("no such container") != std::string::npos);
}
}  // namespace

PodmanClient::PodmanClient(std::string socket_path) : socket_(std::move(socket_path)) {}

httplib::Result PodmanClient::call(const std::string& what, const std::function<httplib::Result(httplib::Client&)>& fn) {
  httplib::Client http(socket_);
  http.set_address_family(AF_UNIX);
  // httplib would send the socket path as Host, which podman rejects.
  http.set_default_headers({{"Host", "podman"}});
  http.set_connection_timeout(5);
  http.set_read_timeout(60);
  http.set_write_timeout(30);
  auto r = fn(http);
  if (!r)
    throw Error(Code::kUnavailable, "podman API at " + socket_ + " (" + what + "): " + httplib::to_string(r.error()) +
                                        "; is `podman system service` running on that socket?");
  return r;
}

void PodmanClient::fail(const std::string& what, const httplib::Result& r) {
  Code c = Code::kInternal;
  if (r && r->status == 404) c = Code::kNotFound;
  if (r && r->status == 409) c = Code::kFailedPrecondition;
  if (r && r->status == 400) c = Code::kInvalidArgument;
  throw Error(c, "podman " + what + ": " + podman_message(r));
}

void PodmanClient::ping() {
  auto r = call("ping", [](httplib::Client& c) { return c.Get("/_ping"); });
  if (r->status != 200) fail("ping", r);
}

bool PodmanClient::image_exists(const std::string& image) {
  auto r = call("image exists", [&](httplib::Client& c) {
    return c.Get(std::string(kApi) + "/images/" + httplib::detail::encode_query_param(image) + "/exists");
  });
  if (r->status == 204) return true;
  if (r->status == 404) return false;
  fail("image exists " + image, r);
}

std::string PodmanClient::create_container(const nlohmann::json& spec) {
  auto body = spec.dump();
  auto r = call("create", [&](httplib::Client& c) {
    return c.Post(std::string(kApi) + "/containers/create", body, "application/json");
  });
  if (r->status != 201) fail("create container", r);
  return nlohmann::json::parse(r->body).at("Id").get<std::string>();
}

void PodmanClient::start_container(const std::string& id) {
  auto r = call("start", [&](httplib::Client& c) { return c.Post(std::string(kApi) + "/containers/" + id + "/start"); });
  if (r->status != 204 && r->status != 304) fail("start container " + id, r);
}

std::optional<nlohmann::json> PodmanClient::inspect_container(const std::string& id) {
  auto r = call("inspect", [&](httplib::Client& c) { return c.Get(std::string(kApi) + "/containers/" + id + "/json"); });
  if (gone(r)) return std::nullopt;
  if (r->status != 200) fail("inspect container " + id, r);
  return nlohmann::json::parse(r->body);
}

bool PodmanClient::stop_container(const std::string& id, int grace_s) {
  auto r = call("stop", [&](httplib::Client& c) {
    return c.Post(std::string(kApi) + "/containers/" + id + "/stop?timeout=" + std::to_string(grace_s));
  });
  if (gone(r)) return false;
  if (r->status != 204 && r->status != 304) fail("stop container " + id, r);  // 304: already stopped
  return true;
}

bool PodmanClient::remove_container(const std::string& id) {
  auto r = call("remove", [&](httplib::Client& c) {
    return c.Delete(std::string(kApi) + "/containers/" + id + "?force=true&timeout=5");
  });
  if (gone(r)) return false;
  if (r->status != 200 && r->status != 204) fail("remove container " + id, r);
  return true;
}

nlohmann::json PodmanClient::list_containers(const std::string& label_filter) {
  std::string filters = nlohmann::json{{"label", {label_filter}}}.dump();
  auto r = call("list", [&](httplib::Client& c) {
    return c.Get(std::string(kApi) + "/containers/json?all=true&filters=" + httplib::detail::encode_query_param(filters));
  });
  if (r->status != 200) fail("list containers", r);
  auto j = nlohmann::json::parse(r->body);
  return j.is_array() ? j : nlohmann::json::array();
}

}  // namespace bulwark::podman
