#include <doctest/doctest.h>

#include "services/driver-docker/container_spec.h"
#include "shared/error.h"

using namespace bulwark;
using namespace bulwark::docker;
using nlohmann::json;

namespace {
v1::SandboxSpec box() {
  v1::SandboxSpec s;
  s.set_name("box");
  s.set_image("localhost/bulwark/base:latest");
  s.add_command("sh");
  s.add_command("-c");
  s.add_command("echo hi");
  return s;
}
ContainerConfig config() { return {"docker-h", "nats://172.18.0.1:4222", "/opt/bundle"}; }
bool has_env(const json& body, const std::string& entry) {
  for (const auto& e : body["Env"])
    if (e == entry) return true;
  return false;
}
}  // namespace

TEST_CASE("the container runs the bundled supervisor with the agent command after --") {
  auto s = box();
  (*s.mutable_env())["BULWARK_SANDBOX_ID"] = "spoofed";
  (*s.mutable_env())["TOKEN"] = "t";
  (*s.mutable_labels())["team"] = "a";
  auto j = container_body("abc123", s, config());
  CHECK(container_name("abc123") == "bulwark-abc123");
  CHECK(j["Image"] == "localhost/bulwark/base:latest");
  CHECK(j["Entrypoint"] == json({"/.bulwark/lib/ld.so", "--library-path", "/.bulwark/lib", "/.bulwark/bin/bulwark-supervisor"}));
  CHECK(j["Cmd"] == json({"--", "sh", "-c", "echo hi"}));
  CHECK(j["Hostname"] == "box");
  CHECK(j["Tty"] == false);
  CHECK(j["OpenStdin"] == false);
  // Env is a sorted KEY=value list; the user's value cannot override the supervisor's.
  CHECK(has_env(j, "BULWARK_SANDBOX_ID=abc123"));
  CHECK_FALSE(has_env(j, "BULWARK_SANDBOX_ID=spoofed"));
  CHECK(has_env(j, "BULWARK_NATS_URL=nats://172.18.0.1:4222"));
  CHECK(has_env(j, "TOKEN=t"));
  CHECK(std::is_sorted(j["Env"].begin(), j["Env"].end()));
  CHECK_FALSE(json(j["Env"]).dump().find("BULWARK_POLICY_YAML") != std::string::npos);
  s.set_policy("version: 1\n");
  CHECK(has_env(container_body("abc123", s, config()), "BULWARK_POLICY_YAML=version: 1\n"));
}

TEST_CASE("labels: what Bulwark owns, found again by driver id after a restart") {
  auto s = box();
  (*s.mutable_labels())["team"] = "a";
  auto l = container_body("abc123", s, config())["Labels"];
  CHECK(l[kManagedLabel] == "true");
  CHECK(l[kSandboxLabel] == "abc123");
  CHECK(l[kDriverLabel] == "docker-h");
  CHECK(l[kNameLabel] == "box");
  CHECK(l["io.bulwark.label.team"] == "a");
  CHECK(l.size() == 5);
}

TEST_CASE("the supervisor bundle is bind-mounted read-only, and nothing else is mounted") {
  auto h = container_body("abc123", box(), config())["HostConfig"];
  REQUIRE(h["Mounts"].size() == 1);
  CHECK(h["Mounts"][0] == json({{"Type", "bind"}, {"Source", "/opt/bundle"}, {"Target", "/.bulwark"}, {"ReadOnly", true}}));
  CHECK_FALSE(h.contains("Binds"));
  CHECK_FALSE(h.contains("Tmpfs"));
}

TEST_CASE("capabilities: every default dropped, only what the supervisor's steps need added") {
  auto h = container_body("abc123", box(), config())["HostConfig"];
  CHECK(h["CapDrop"] == json({"ALL"}));
  CHECK(h["CapAdd"] == json({"SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "DAC_OVERRIDE", "SETUID", "SETGID", "SETPCAP", "KILL", "NET_BIND_SERVICE"}));
  // Audit records reach readers in the host's network namespace only: AUDIT_READ there alone.
  auto c = config();
  c.network = "host";
  CHECK(container_body("abc123", box(), c)["HostConfig"]["CapAdd"] ==
        json({"SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "DAC_OVERRIDE", "SETUID", "SETGID", "SETPCAP", "KILL", "NET_BIND_SERVICE", "AUDIT_READ"}));
  // Never the ones that reach past the container.
  for (const char* never : {"SYS_MODULE", "SYS_RAWIO", "SYS_BOOT", "SYS_TIME", "MAC_ADMIN", "DAC_READ_SEARCH",
                            "SYS_RESOURCE", "BPF", "PERFMON", "NET_RAW", "MKNOD", "AUDIT_CONTROL", "ALL"})
    for (const auto& c : h["CapAdd"]) CHECK(c != never);
  CHECK(h["Privileged"] == false);
  CHECK(h["SecurityOpt"] == json({"seccomp=unconfined", "apparmor=unconfined"}));
  // Present and empty (docker's defaults when absent): /proc fully visible, as podman's unmask=ALL.
  CHECK(h["MaskedPaths"] == json::array());
  CHECK(h["ReadonlyPaths"] == json::array());
}

TEST_CASE("no restart policy, no init of docker's, no auto-remove: an ended sandbox stays ended and inspectable") {
  auto h = container_body("abc123", box(), config())["HostConfig"];
  CHECK(h["RestartPolicy"] == json({{"Name", "no"}}));
  CHECK(h["Init"] == false);
  CHECK(h["AutoRemove"] == false);
}

TEST_CASE("limits: pids always, memory (without extra swap) and CPUs when the driver sets them") {
  auto c = config();
  auto h = container_body("abc123", box(), c)["HostConfig"];
  CHECK(h["PidsLimit"] == 4096);
  CHECK_FALSE(h.contains("Memory"));
  CHECK_FALSE(h.contains("NanoCpus"));
  c.pids_limit = 256;
  c.memory_bytes = 512ll << 20;
  c.nano_cpus = 1500000000;
  h = container_body("abc123", box(), c)["HostConfig"];
  CHECK(h["PidsLimit"] == 256);
  CHECK(h["Memory"] == 512ll << 20);
  CHECK(h["MemorySwap"] == 512ll << 20);
  CHECK(h["NanoCpus"] == 1500000000);
}

TEST_CASE("network: the managed bridge by name; host shares the host's namespace and drops the hostname") {
  auto c = config();
  auto j = container_body("abc123", box(), c);
  CHECK(j["HostConfig"]["NetworkMode"] == "bulwark");
  c.network = "host";
  j = container_body("abc123", box(), c);
  CHECK(j["HostConfig"]["NetworkMode"] == "host");
  CHECK_FALSE(j.contains("Hostname"));
  auto n = network_body("bulwark");
  CHECK(n["Name"] == "bulwark");
  CHECK(n["Driver"] == "bridge");
  CHECK(n["CheckDuplicate"] == true);
  CHECK(n["Labels"][kManagedLabel] == "true");
}

TEST_CASE("GPUs: none by default; N become one NVIDIA device request with the gpu capability") {
  auto c = config();
  CHECK_FALSE(container_body("abc123", box(), c)["HostConfig"].contains("DeviceRequests"));
  c.gpus = 2;
  auto d = container_body("abc123", box(), c)["HostConfig"]["DeviceRequests"];
  CHECK(d == json::parse(R"([{"Driver": "nvidia", "Count": 2, "Capabilities": [["gpu"]]}])"));
  auto s = box();  // the sandbox's own request wins over the driver's default
  s.mutable_resources()->set_gpus(1);
  CHECK(container_body("abc123", s, c)["HostConfig"]["DeviceRequests"][0]["Count"] == 1);
}

TEST_CASE("the sandbox's resources win over the driver's defaults; impossible ones name the field") {
  auto c = config();
  c.memory_bytes = 1ll << 30;
  auto s = box();
  s.mutable_resources()->set_cpus(0.5);
  s.mutable_resources()->set_memory_bytes(256ull << 20);
  s.mutable_resources()->set_pids(100);
  auto h = container_body("abc123", s, c)["HostConfig"];
  CHECK(h["NanoCpus"] == 500000000);
  CHECK(h["Memory"] == 256ll << 20);
  CHECK(h["MemorySwap"] == 256ll << 20);
  CHECK(h["PidsLimit"] == 100);
  s.mutable_resources()->set_memory_bytes(4096);
  try {
    container_body("abc123", s, c);
    FAIL("accepted 4 KiB of memory");
  } catch (const bulwark::Error& e) {
    CHECK(e.field() == "resources.memory_bytes");
  }
  s.mutable_resources()->set_memory_bytes(0);
  s.mutable_resources()->set_cpus(-2);
  CHECK_THROWS_AS(container_body("abc123", s, c), bulwark::Error);
}

TEST_CASE("providers: the supervisor is told to require their environment, and nothing of them is in the body") {
  auto s = box();
  s.clear_command();
  s.add_command("sh");
  auto plain = container_body("abc123", s, config());
  CHECK(plain["Cmd"] == json({"--", "sh"}));
  CHECK(plain.dump().find("provider-env") == std::string::npos);

  s.add_providers("github-work");
  s.add_providers("anthropic-main");
  auto j = container_body("abc123", s, config());
  CHECK(j["Cmd"] == json({"--provider-env", "required", "--", "sh"}));
  // Only the supervisor's flag: no provider name, and no credential (the driver never has one).
  std::string dump = j.dump();
  CHECK(dump.find("github-work") == std::string::npos);
  CHECK(dump.find("anthropic-main") == std::string::npos);
  for (const auto& e : j["Env"]) {
    CHECK(e.get<std::string>().find("TOKEN") == std::string::npos);
    CHECK(e.get<std::string>().find("API_KEY") == std::string::npos);
  }
  CHECK(j["Env"].size() == plain["Env"].size());
}

TEST_CASE("image references split into repository and tag; a registry port is not a tag") {
  CHECK(split_image("localhost/bulwark/base:latest") == std::pair<std::string, std::string>{"localhost/bulwark/base", "latest"});
  CHECK(split_image("busybox") == std::pair<std::string, std::string>{"busybox", "latest"});
  CHECK(split_image("reg:5000/team/img") == std::pair<std::string, std::string>{"reg:5000/team/img", "latest"});
  CHECK(split_image("reg:5000/team/img:v2") == std::pair<std::string, std::string>{"reg:5000/team/img", "v2"});
}

TEST_CASE("the CPU limit flag is a decimal; anything else names the flag") {
  CHECK(parse_cpus("", "cpu_limit") == 0);
  CHECK(parse_cpus("1.5", "cpu_limit") == 1500000000);
  CHECK(parse_cpus("0.25", "cpu_limit") == 250000000);
  CHECK_THROWS_AS(parse_cpus("two", "cpu_limit"), Error);
  CHECK_THROWS_AS(parse_cpus("-1", "cpu_limit"), Error);
  CHECK_THROWS_AS(parse_cpus("1.5x", "cpu_limit"), Error);
}

TEST_CASE("the sandbox's NATS URL: loopback and wildcard hosts become the bridge's gateway, others stay") {
  auto u = sandbox_nats_url("nats://127.0.0.1:4222", "172.18.0.1");
  CHECK(u.url == "nats://172.18.0.1:4222");
  CHECK(u.rewritten == std::vector<std::string>{"172.18.0.1:4222"});
  u = sandbox_nats_url("nats://user:pw@localhost:5222,nats://nats.example:4222,tls://0.0.0.0", "10.1.0.1");
  CHECK(u.url == "nats://user:pw@10.1.0.1:5222,nats://nats.example:4222,tls://10.1.0.1");
  CHECK(u.rewritten == std::vector<std::string>{"10.1.0.1:5222", "10.1.0.1:4222"});
  u = sandbox_nats_url("nats://[::1]:4222", "10.1.0.1");
  CHECK(u.url == "nats://10.1.0.1:4222");
  // Host network (no gateway): the host's loopback is the sandbox's too.
  u = sandbox_nats_url("nats://127.0.0.1:4222", "");
  CHECK(u.url == "nats://127.0.0.1:4222");
  CHECK(u.rewritten.empty());
  CHECK(sandbox_nats_url("nats://10.0.0.5:4222", "172.18.0.1").url == "nats://10.0.0.5:4222");
}

TEST_CASE("keep_after_exit: the supervisor is told to keep the sandbox after the agent ends") {
  auto s = box();
  CHECK(container_body("abc123", s, config())["Cmd"][0] == "--");
  s.set_keep_after_exit(true);
  auto cmd = container_body("abc123", s, config())["Cmd"];
  CHECK(cmd[0] == "--keep-after-exit=true");
  CHECK(cmd[1] == "--");
}
