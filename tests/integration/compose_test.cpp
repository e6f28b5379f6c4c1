// compose.yaml for real: the images built from this build's binaries (scripts/build-images
// --from-build, the fast path), `docker-compose up -d` against a private dockerd
// (tests/support/dockerd.h; the host's docker state is never touched), every service healthy, the
// admin token read the way docs/deploy.md says, the real `bulwark` CLI creating a sandbox that
// driver-docker runs on the same dockerd, then `down -v` leaving nothing behind.
#include <doctest/doctest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/integration/suite.h"
#include "tests/support/dockerd.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

struct Run {
  int code;
  std::string out;  // stdout and stderr together
};

// Runs argv with the current environment plus `env` ("K=V"), within `timeout`.
Run run(const std::vector<std::string>& argv, const std::vector<std::string>& env, const TempDir& dir,
        std::chrono::seconds timeout = 120s) {
  std::vector<std::string> e;
  for (char** p = environ; *p; ++p) e.push_back(*p);
  e.insert(e.end(), env.begin(), env.end());
  std::string out = dir.file("run-" + random_hex(4) + ".log");
  auto p = Process::spawn({.argv = argv, .env = e, .output_file = out});
  auto code = p.wait_for(timeout);
  if (!code) {
    p.stop(0ms);
    return {-1, "timed out after " + std::to_string(timeout.count()) + " s: " + read_file(out)};
  }
  return {*code, read_file(out)};
}

httplib::Client engine(const std::string& socket) {
  httplib::Client c(socket);
  c.set_address_family(AF_UNIX);
  c.set_default_headers({{"Host", "docker"}});
  c.set_read_timeout(30);
  return c;
}

json get_json(httplib::Client& c, const std::string& path) {
  auto r = c.Get(path);
  REQUIRE_MESSAGE((r && r->status == 200), "GET " << path << ": " << (r ? r->body : httplib::to_string(r.error())));
  return json::parse(r->body);
}

std::string filter(const std::string& label) {
  return httplib::detail::encode_query_param(json{{"label", {label}}}.dump());
}

}  // namespace

TEST_CASE("docker-compose up runs the suite from its images, and bulwark sandbox create -- echo hi works") {
  require_binary("docker-compose", "docker-compose");
  require_binary("docker", "docker.io");
  auto t0 = std::chrono::steady_clock::now();
  auto since = [&] { return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count(); };
  Dockerd dockerd;
  TempDir dir("bulwark-compose");
  auto api = engine(dockerd.socket());

  std::string project = "bwk" + random_hex(4);
  int http_port = free_port(), connect_port = free_port();
  std::vector<std::string> env = {
      "DOCKER_HOST=unix://" + dockerd.socket(),
      "BULWARK_HTTP_PORT=" + std::to_string(http_port),
      "BULWARK_CONNECT_PORT=" + std::to_string(connect_port),
      "BULWARK_NETWORK=" + project,
      "BULWARK_DOCKER_SOCKET=" + dockerd.socket(),
      "BULWARK_BUNDLE_DIR=" + dir.file("supervisor-bundle"),
      "BULWARK_DRIVER_ID=docker-" + project,
  };

  auto built = run({source_dir() + "/scripts/build-images", "--from-build", bin(""), "--sizes"}, env, dir, 300s);
  REQUIRE_MESSAGE(built.code == 0, built.out);
  MESSAGE("images built in " << since() << " ms:\n" << built.out);

  std::vector<std::string> compose = {"docker-compose", "-f", source_dir() + "/compose.yaml", "-p", project};
  auto with = [&](std::vector<std::string> args) {
    std::vector<std::string> a = compose;
    a.insert(a.end(), args.begin(), args.end());
    return a;
  };
  auto logs = [&] { return run(with({"logs", "--no-color", "--tail", "30"}), env, dir).out; };

  auto up = run(with({"up", "-d"}), env, dir, 180s);
  REQUIRE_MESSAGE(up.code == 0, up.out << "\n" << logs());
  auto t_up = since();

  // Every long-running service reports healthy (its own health check: /healthz or its NATS health subject).
  std::string project_filter = "/v1.41/containers/json?filters=" + filter("com.docker.compose.project=" + project);
  json containers;
  bool healthy = wait_until([&] {
    containers = get_json(api, project_filter);
    int ok = 0;
    for (const auto& c : containers) ok += c.value("Status", "").find("(healthy)") != std::string::npos;
    return ok == 6;  // nats, gateway-api, scheduler, policy-service, privacy-router, driver-docker
  }, 90s);
  REQUIRE_MESSAGE(healthy, containers.dump(2) << "\n" << logs());
  auto t_healthy = since();

  // NATS is TLS-only and operator-mode: from inside the network, plain TCP is refused, TLS without
  // credentials is refused, and a service's own credentials get its health answered.
  auto ask_scheduler_health = [&](const std::vector<std::string>& extra_env) {
    std::vector<std::string> a = {"exec", "-T", "-e", "BULWARK_NATS_URL=nats://nats:4222"};
    for (const auto& e : extra_env) a.insert(a.end(), {"-e", e});
    a.insert(a.end(), {"nats", "/usr/local/bin/bulwark-healthcheck", "nats", "scheduler"});
    return run(with(a), env, dir);
  };
  auto plain = ask_scheduler_health({});
  CHECK_MESSAGE(plain.code != 0, "plain TCP to NATS was accepted: " << plain.out);
  auto anonymous = ask_scheduler_health({"BULWARK_NATS_CA=/etc/bulwark/pki/ca.crt"});
  CHECK_MESSAGE(anonymous.code != 0, "NATS accepted a client without credentials: " << anonymous.out);
  CHECK_MESSAGE(anonymous.out.find("refused the credentials") != std::string::npos, anonymous.out);
  auto with_creds = ask_scheduler_health({"BULWARK_NATS_CA=/etc/bulwark/pki/ca.crt",
                                          "BULWARK_NATS_CREDS=/etc/bulwark/nats/scheduler.creds"});
  CHECK_MESSAGE(with_creds.code == 0, with_creds.out);

  // The first admin token, read as docs/deploy.md says.
  auto token = run(with({"exec", "-T", "gateway-api", "cat", "/var/lib/bulwark/admin.token"}), env, dir);
  REQUIRE_MESSAGE(token.code == 0, token.out);
  std::string admin = token.out.substr(0, token.out.find('\n'));
  REQUIRE_MESSAGE(admin.rfind("bwk_", 0) == 0, token.out);

  // The PKI, made by the nats-auth step in the secrets volume: the CLI's CA and client certificate.
  std::vector<std::string> cli_env = env;
  for (const char* f : {"ca.crt", "client-cli-admin.crt", "client-cli-admin.key"}) {
    auto pem = run(with({"exec", "-T", "gateway-api", "cat", std::string("/etc/bulwark/pki/") + f}), env, dir);
    REQUIRE_MESSAGE((pem.code == 0 && pem.out.find("-----BEGIN") != std::string::npos), f << ": " << pem.out);
    std::ofstream(dir.file(f)) << pem.out;
    std::filesystem::permissions(dir.file(f), std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
  cli_env.push_back("BULWARK_CA_CERT=" + dir.file("ca.crt"));
  cli_env.push_back("BULWARK_CLIENT_CERT=" + dir.file("client-cli-admin.crt"));
  cli_env.push_back("BULWARK_CLIENT_KEY=" + dir.file("client-cli-admin.key"));

  // The real CLI against the published port, over mTLS: the sandbox runs on the same dockerd via driver-docker.
  std::string gateway = "https://127.0.0.1:" + std::to_string(http_port);
  cli_env.push_back("BULWARK_TOKEN=" + admin);
  auto created = run({bin("bulwark"), "--gateway", gateway, "sandbox", "create", "--name", "hello", "--", "echo", "hi"}, cli_env,
                     dir, 90s);
  CHECK_MESSAGE(created.code == 0, created.out << "\n" << logs());
  CHECK_MESSAGE(created.out.find("EXITED") != std::string::npos, created.out);
  CHECK_MESSAGE(created.out.find("\nhi\n") != std::string::npos, created.out);
  auto t_sandbox = since();
  auto sandboxes = get_json(api, "/v1.41/containers/json?all=true&filters=" + filter("io.bulwark.sandbox_id"));
  CHECK_MESSAGE(sandboxes.size() == 1, sandboxes.dump(2));

  // Idle memory of the control plane: VmRSS of each service's process (docs/deploy.md reports it).
  // Only the gateway and nats-server mount the secrets volume (CA key, seeds, every .creds); every
  // other service mounts a volume with its own .creds and the CA certificate alone.
  int64_t total_kib = 0;
  std::string per;
  for (const auto& c : get_json(api, project_filter)) {
    auto info = get_json(api, "/v1.41/containers/" + c.value("Id", "") + "/json");
    const std::string service = c["Labels"].value("com.docker.compose.service", "?");
    for (const auto& m : info["Mounts"]) {
      const std::string volume = m.value("Name", "");
      if (volume == project + "_secrets")
        CHECK_MESSAGE((service == "gateway-api" || service == "nats"), service << " mounts the secrets volume");
      if (m.value("Destination", "") == "/etc/bulwark/nats" && service != "gateway-api" && service != "nats")
        CHECK_MESSAGE(volume == project + "_nats-" + service, service << " mounts " << volume);
    }
    std::string status = read_file("/proc/" + std::to_string(info["State"].value("Pid", 0)) + "/status");
    auto at = status.find("VmRSS:");
    REQUIRE_MESSAGE(at != std::string::npos, status);
    int64_t kib = std::stoll(status.substr(at + 6));
    total_kib += kib;
    per += " " + service + "=" + std::to_string(kib / 1024) + "MiB";
  }
  MESSAGE("control plane RSS " << total_kib / 1024 << " MiB:" << per);

  auto deleted = run({bin("bulwark"), "--gateway", gateway, "sandbox", "delete", "hello", "--wait"}, cli_env, dir);
  CHECK_MESSAGE(deleted.code == 0, deleted.out);

  auto down = run(with({"down", "-v"}), env, dir, 120s);
  CHECK_MESSAGE(down.code == 0, down.out);
  auto left = get_json(api, "/v1.41/containers/json?all=true");
  CHECK_MESSAGE(left.empty(), left.dump(2));
  auto volumes = get_json(api, "/v1.41/volumes?filters=" + filter("com.docker.compose.project=" + project));
  bool no_volumes = volumes["Volumes"].is_null() || volumes["Volumes"].empty();
  CHECK_MESSAGE(no_volumes, volumes.dump(2));
  MESSAGE("compose: up " << t_up << " ms, all healthy " << t_healthy << " ms, sandbox done " << t_sandbox << " ms, down at "
                         << since() << " ms (including the image builds)");
}
