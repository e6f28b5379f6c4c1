// One lifecycle, every compute driver that can run here: create -> READY -> exec -> logs -> a policy
// denial -> stop -> start (files kept) -> delete, through gateway-api, the scheduler and the real
// driver (podman: real podman; docker: a private real dockerd; vm: real QEMU under TCG;
// kubernetes: no real cluster, so the schema-validating fake API server of
// tests/support/fake_kube_api.h with its kubelet running each pod's agent container in podman).
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>

#include "bulwark/v1/driver.pb.h"
#include "shared/bus.h"
#include "shared/subjects.h"
#include "tests/integration/suite.h"
#include "tests/support/dockerd.h"
#include "tests/support/fake_kube_api.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

std::vector<std::string> lines_of(Suite& suite, const std::string& id, const std::string& stream) {
  auto r = suite.client().Get("/v1/sandboxes/" + id + "/logs?stream=" + stream);
  REQUIRE(r);
  REQUIRE(r->status == 200);
  std::vector<std::string> out;
  for (const auto& l : json::parse(r->body).value("lines", json::array())) out.push_back(l.value("line", ""));
  return out;
}

bool any_contains(const std::vector<std::string>& lines, const std::string& needle) {
  for (const auto& l : lines)
    if (l.find(needle) != std::string::npos) return true;
  return false;
}

json post(Suite& suite, const std::string& path, const json& body, int want) {
  auto c = suite.client();
  c.set_read_timeout(120);
  auto r = c.Post(path, body.dump(), "application/json");
  REQUIRE_MESSAGE(r, "no answer from " << path);
  REQUIRE_MESSAGE(r->status == want, path << ": " << r->status << " " << r->body);
  return json::parse(r->body);
}

long ms_since(std::chrono::steady_clock::time_point t0) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
}

// The lifecycle itself; boot: how long a (re)start may take on this driver.
void lifecycle(Suite& suite, const std::string& kind, std::chrono::seconds boot) {
  // The agent tries a direct connection its policy does not allow (a firewall denial), says it is
  // up, and waits.
  auto t0 = std::chrono::steady_clock::now();
  auto s = suite.create({{"name", "life-" + kind},
                         {"driver_kind", kind},
                         {"command", {"sh", "-c", "nc -w 3 192.0.2.10 443 </dev/null; echo agent-up; exec sleep 600"}}});
  std::string id = s["sandbox_id"];
  s = suite.wait_phase(id, {"READY", "FAILED"}, boot);
  REQUIRE_MESSAGE(s["phase"] == "READY", s.dump(2));
  MESSAGE(kind << ": create to READY " << ms_since(t0) << " ms");
  CHECK(s["driver_id"] == suite.driver_id());

  // exec runs confined as the agent, in its files.
  auto e = post(suite, "/v1/sandboxes/" + id + "/exec",
                {{"command", {"sh", "-c", "echo $((6*7)) > /sandbox/answer; cat /sandbox/answer; echo oops >&2; exit 3"}},
                 {"timeout_s", 30}},
                200);
  CHECK(e["exit_code"] == 3);
  CHECK(e["stdout"] == "42\n");
  CHECK(e["stderr"] == "oops\n");

  // The agent's output and the policy's denial reach the gateway.
  CHECK(wait_until([&] { return any_contains(lines_of(suite, id, "stdout"), "agent-up"); }, 30s));
  CHECK_MESSAGE(wait_until([&] { return any_contains(lines_of(suite, id, "denial"), "192.0.2.10"); }, 30s),
                "no denial for 192.0.2.10; denial lines: " << json(lines_of(suite, id, "denial")).dump());

  // stop keeps the workload and its files; start runs it again.
  t0 = std::chrono::steady_clock::now();
  CHECK(post(suite, "/v1/sandboxes/" + id + "/stop", {{"grace_s", 10}}, 200)["phase"] == "STOPPED");
  MESSAGE(kind << ": stop " << ms_since(t0) << " ms");
  t0 = std::chrono::steady_clock::now();
  CHECK(post(suite, "/v1/sandboxes/" + id + "/start", json::object(), 202)["phase"] == "STARTING");
  s = suite.wait_phase(id, {"READY", "FAILED"}, boot);
  REQUIRE_MESSAGE(s["phase"] == "READY", s.dump(2));
  MESSAGE(kind << ": start to READY " << ms_since(t0) << " ms");
  e = post(suite, "/v1/sandboxes/" + id + "/exec", {{"command", {"cat", "/sandbox/answer"}}}, 200);
  CHECK(e["exit_code"] == 0);
  CHECK(e["stdout"] == "42\n");

  auto r = suite.client().Delete("/v1/sandboxes/" + id);
  REQUIRE(r);
  CHECK(r->status == 202);
  suite.wait_phase(id, {"DELETED"}, 60s);
  // The driver has nothing left for it.
  auto bus = Bus::connect({suite.nats_url(), "lifecycle"});
  v1::DriverGetRequest get;
  get.set_sandbox_id(id);
  CHECK_THROWS_AS(bus->request<v1::WorkloadStatus>(subjects::driver_op(suite.driver_id(), "get"), get, 10s), Error);
}

}  // namespace

TEST_CASE("lifecycle on podman (real podman)") {
  Suite suite;
  lifecycle(suite, "podman", 60s);
}

TEST_CASE("lifecycle on docker (a private real dockerd)") {
  Dockerd dockerd;
  dockerd.import_busybox_image("localhost/bulwark/base:latest");
  // The private dockerd has no bridge (tests/support/dockerd.h): sandboxes share the host's network.
  Suite suite({.driver = "driver-docker", .driver_args = {"--docker-socket", dockerd.socket(), "--network", "host"}});
  lifecycle(suite, "docker", 60s);
}

TEST_CASE("lifecycle on vm (real QEMU microVMs under TCG)") {
  require_binary("qemu-system-x86_64", "qemu-system-x86");
  require_binary("qemu-img", "qemu-utils");
  require_binary("mkfs.ext4", "e2fsprogs");
  std::string vm_dir = std::string(BULWARK_BIN_DIR) + "/vm";  // kernel + initramfs, cached beside the binaries
  REQUIRE(Process::spawn({.argv = {source_dir() + "/scripts/build-vm-initrd", vm_dir}}).wait() == 0);
  TempDir state("bulwark-vm-lifecycle");
  VmReaper kill_vms{state.file("state") + "/sandboxes"};  // a failed test must not leave its VMs running
  Suite suite({.driver = "driver-vm",
               .driver_args = {"--state-dir", state.file("state"), "--kernel", vm_dir + "/vmlinuz", "--initrd",
                               vm_dir + "/initrd.img", "--accel", "auto", "--image-engine", "podman", "--image-socket",
                               podman_socket(), "--memory", "256", "--disk-headroom", "64"}});
  lifecycle(suite, "vm", 120s);
}

TEST_CASE("lifecycle on kubernetes (fake API server checking the real CRD schema; pods run by podman)") {
  // No real cluster runs here: the fake validates every Sandbox against the CRD, plays the
  // controller, and its kubelet runs each pod's agent container with the test podman service.
  FakeKubeApi api({.kubelet_podman_socket = podman_socket()});
  TempDir dir("bulwark-k8s-lifecycle");
  // --storage-size: /sandbox is a claim (a podman named volume), so files survive stop/start the
  // way they do on a cluster, where stop deletes the pod.
  Suite suite({.driver = "driver-k8s",
               .driver_args = {"--kubeconfig", api.write_kubeconfig(dir.path(), "bulwark-test-token", "agents"),
                               "--namespace", "agents", "--supervisor-image", "registry.test/bulwark/supervisor:1",
                               "--storage-size", "1Gi"}});
  lifecycle(suite, "kubernetes", 60s);
  CHECK(api.rejections().empty());
}
