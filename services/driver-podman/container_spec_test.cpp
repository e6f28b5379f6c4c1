#include <doctest/doctest.h>

#include "services/driver-podman/container_spec.h"
#include "shared/error.h"

using namespace bulwark;
using namespace bulwark::podman;

TEST_CASE("the container runs the bundled supervisor with the agent command after --") {
  v1::SandboxSpec s;
  s.set_name("box");
  s.set_image("localhost/bulwark/base:latest");
  s.add_command("sh");
  s.add_command("-c");
  s.add_command("echo hi");
  (*s.mutable_env())["BULWARK_SANDBOX_ID"] = "spoofed";
  (*s.mutable_env())["TOKEN"] = "t";
  (*s.mutable_labels())["team"] = "a";
  auto j = container_spec("abc123", s, {"podman-h", "nats://127.0.0.1:4222", "/opt/bundle"});
  CHECK(j["name"] == "bulwark-abc123");
  CHECK(j["image"] == "localhost/bulwark/base:latest");
  CHECK(j["entrypoint"].back() == "/.bulwark/bin/bulwark-supervisor");
  CHECK(j["command"] == nlohmann::json({"--", "sh", "-c", "echo hi"}));
  CHECK(j["env"]["BULWARK_SANDBOX_ID"] == "abc123");  // the user's value cannot override it
  CHECK(j["env"]["TOKEN"] == "t");
  CHECK(j["labels"][kManagedLabel] == "true");
  CHECK(j["labels"][kSandboxLabel] == "abc123");
  CHECK(j["labels"][kDriverLabel] == "podman-h");
  CHECK(j["labels"]["io.bulwark.label.team"] == "a");
  CHECK(j["mounts"][0]["source"] == "/opt/bundle");
  CHECK(j["mounts"][0]["options"] == nlohmann::json({"ro"}));
  CHECK(j["cap_add"] == nlohmann::json({"SYS_ADMIN", "NET_ADMIN", "AUDIT_READ", "SYS_PTRACE"}));
  CHECK(j["seccomp_profile_path"] == "unconfined");
  CHECK(j["resource_limits"]["pids"]["limit"] == 4096);
  CHECK_FALSE(j["env"].contains("BULWARK_POLICY_YAML"));
  s.set_policy("version: 1\n");
  CHECK(container_spec("abc123", s, {"podman-h", "nats://x", "/b"})["env"]["BULWARK_POLICY_YAML"] == "version: 1\n");
}

TEST_CASE("providers: the supervisor is told to require their environment, and nothing of them is in the spec") {
  v1::SandboxSpec s;
  s.set_name("box");
  s.set_image("img");
  s.add_command("sh");
  ContainerConfig c{"podman-h", "nats://127.0.0.1:4222", "/opt/bundle"};
  auto plain = container_spec("abc123", s, c);
  CHECK(plain["command"] == nlohmann::json({"--", "sh"}));
  CHECK(plain.dump().find("provider-env") == std::string::npos);

  s.add_providers("github-work");
  s.add_providers("anthropic-main");
  auto j = container_spec("abc123", s, c);
  CHECK(j["command"] == nlohmann::json({"--provider-env", "required", "--", "sh"}));
  // Only the supervisor's flag: no provider name, and no credential (the driver never has one).
  std::string dump = j.dump();
  CHECK(dump.find("github-work") == std::string::npos);
  CHECK(dump.find("anthropic-main") == std::string::npos);
  for (const auto& [k, v] : j["env"].items()) {
    CHECK(k.find("TOKEN") == std::string::npos);
    CHECK(k.find("API_KEY") == std::string::npos);
  }
  CHECK(j["env"].size() == plain["env"].size());
}

TEST_CASE("resources: the sandbox's limits become podman's, GPUs become CDI device names") {
  v1::SandboxSpec s;
  s.set_image("img");
  auto* r = s.mutable_resources();
  r->set_cpus(1.5);
  r->set_memory_bytes(512ull << 20);
  r->set_pids(300);
  r->set_gpus(2);
  auto j = container_spec("abc", s, {"podman-h", "nats://x", "/b"});
  CHECK(j["resource_limits"]["pids"]["limit"] == 300);
  CHECK(j["resource_limits"]["memory"]["limit"] == 512ull << 20);
  CHECK(j["resource_limits"]["memory"]["swap"] == 512ull << 20);
  CHECK(j["resource_limits"]["cpu"]["quota"] == 150000);
  CHECK(j["resource_limits"]["cpu"]["period"] == 100000);
  CHECK(j["devices"] == nlohmann::json::parse(R"([{"path": "nvidia.com/gpu=0"}, {"path": "nvidia.com/gpu=1"}])"));

  r->set_memory_bytes(1024);
  try {
    container_spec("abc", s, {"podman-h", "nats://x", "/b"});
    FAIL("accepted 1 KiB of memory");
  } catch (const Error& e) {
    CHECK(e.field() == "resources.memory_bytes");
  }
  r->set_memory_bytes(0);
  r->set_cpus(-1);
  CHECK_THROWS_AS(container_spec("abc", s, {"podman-h", "nats://x", "/b"}), Error);
  r->set_cpus(0);
  r->set_gpus(0);
  CHECK_FALSE(container_spec("abc", s, {"podman-h", "nats://x", "/b"}).contains("devices"));
}

TEST_CASE("keep_after_exit: the supervisor is told to keep the sandbox after the agent ends") {
  v1::SandboxSpec s;
  s.set_image("img");
  s.add_command("true");
  CHECK(container_spec("abc", s, {"podman-h", "nats://x", "/b"})["command"] == nlohmann::json({"--", "true"}));
  s.set_keep_after_exit(true);
  CHECK(container_spec("abc", s, {"podman-h", "nats://x", "/b"})["command"] ==
        nlohmann::json({"--keep-after-exit=true", "--", "true"}));
}

TEST_CASE("tty: the supervisor gives the agent a pseudo-terminal (the container needs none)") {
  v1::SandboxSpec s;
  s.set_image("img");
  s.add_command("sh");
  s.set_tty(true);
  auto body = container_spec("abc", s, {"podman-h", "nats://x", "/b"});
  CHECK(body["command"] == nlohmann::json({"--tty=true", "--", "sh"}));
  CHECK_FALSE(body.value("terminal", false));
}
