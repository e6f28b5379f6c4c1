// driver-vm end to end: a real nats-server (JetStream), the podman API service holding the base
// image, the real bulwark-driver-vm and real QEMU microVMs under TCG (KVM cannot boot a stock
// kernel here; --accel auto must notice and fall back). One VM is booted twice to keep the run
// short: create -> RUNNING -> supervisor check-in -> agent output -> driver restart (the VM
// survives and is reported again) -> stop -> start (same disk) -> exit code -> delete.
#include <doctest/doctest.h>
#include <signal.h>

#include <filesystem>
#include <mutex>

#include "bulwark/v1/driver.pb.h"
#include "shared/bus.h"
#include "shared/subjects.h"
#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

double secs_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Every state report and log line of the sandboxes, as they arrive.
struct Watch {
  std::mutex mu;
  std::vector<v1::StateReport> reports;
  std::vector<v1::LogLine> lines;
  std::vector<std::pair<std::chrono::steady_clock::time_point, v1::StateReport>> timed;

  size_t count(v1::ReportKind k, v1::ReportSource s) {
    std::lock_guard lock(mu);
    size_t n = 0;
    for (const auto& r : reports) n += r.kind() == k && r.source() == s;
    return n;
  }
  std::optional<v1::StateReport> last(v1::ReportKind k, v1::ReportSource s) {
    std::lock_guard lock(mu);
    for (auto it = reports.rbegin(); it != reports.rend(); ++it)
      if (it->kind() == k && it->source() == s) return *it;
    return std::nullopt;
  }
  std::optional<std::chrono::steady_clock::time_point> first_at(v1::ReportKind k, v1::ReportSource s) {
    std::lock_guard lock(mu);
    for (const auto& [t, r] : timed)
      if (r.kind() == k && r.source() == s) return t;
    return std::nullopt;
  }
  bool logged(const std::string& text) {
    std::lock_guard lock(mu);
    for (const auto& l : lines)
      if (l.line().find(text) != std::string::npos) return true;
    return false;
  }
  std::string dump() {
    std::lock_guard lock(mu);
    std::string s;
    for (const auto& r : reports)
      s += "report " + v1::ReportSource_Name(r.source()) + " " + v1::ReportKind_Name(r.kind()) + " code=" +
           std::to_string(r.exit_code()) + " " + r.reason() + "\n";
    for (const auto& l : lines) s += "log " + l.stream() + ": " + l.line() + "\n";
    return s;
  }
};

class VmDriver {
 public:
  VmDriver(const std::string& nats_url, const std::string& state, const std::string& vm_dir, const std::string& log,
           const std::string& driver_id)
      : argv_{bin("bulwark-driver-vm"), "--nats-url", nats_url, "--driver-id", driver_id, "--state-dir", state,
              "--kernel", vm_dir + "/vmlinuz", "--initrd", vm_dir + "/initrd.img", "--accel", "auto",
              "--image-engine", "podman", "--image-socket", podman_socket(), "--memory", "256",
              "--disk-headroom", "64", "--poll", "0.2", "--heartbeat", "0.2"},
        log_(log) {}
  void start() { proc_ = Process::spawn({.argv = argv_, .output_file = log_}); }
  void stop() {
    proc_.signal(SIGTERM);
    CHECK(proc_.wait() == 0);
  }
  std::string log() const { return read_file(log_); }

 private:
  std::vector<std::string> argv_;
  std::string log_;
  Process proc_;
};

}  // namespace

TEST_CASE("driver-vm: a sandbox in a QEMU microVM, from create to delete") {
  auto t_all = std::chrono::steady_clock::now();
  require_binary("qemu-system-x86_64", "qemu-system-x86");
  require_binary("qemu-img", "qemu-utils");
  require_binary("mkfs.ext4", "e2fsprogs");
  // The guest kernel and initramfs, cached beside the binaries (the script skips when current).
  std::string vm_dir = std::string(BULWARK_BIN_DIR) + "/vm";
  auto build = Process::spawn({.argv = {source_dir() + "/scripts/build-vm-initrd", vm_dir}});
  REQUIRE_MESSAGE(build.wait() == 0, "scripts/build-vm-initrd failed: it needs linux-image-amd64, busybox-static "
                                     "and cpio (scripts/install-deps installs them)");

  // The base image with the agent's home (/sandbox, its workdir) owned by the agent's user, so the
  // agent can leave a file on its disk across stop/start.
  podman_socket();  // builds the base image and sets CONTAINERS_CONF
  TempDir img("bulwark-vm-img");
  const std::string image = "localhost/bulwark/vm-test:latest";
  auto tar = Process::spawn({.argv = {source_dir() + "/scripts/build-base-image", "--tar", img.file("rootfs.tar"), "--extra",
                                      "chown 1000:1000 \"$r/sandbox\""}});
  REQUIRE(tar.wait() == 0);
  auto imp = Process::spawn({.argv = {"podman", "import", "--change", "CMD [\"/bin/sh\"]", img.file("rootfs.tar"), image},
                             .output_file = img.file("import.log")});
  REQUIRE_MESSAGE(imp.wait() == 0, read_file(img.file("import.log")));

  NatsServer nats;
  auto bus = Bus::connect({nats.url(), "vm-test"});
  bus->ensure_stream(subjects::kSandboxStream, {subjects::kSandboxAll}, std::chrono::hours(1));
  TempDir dir("bulwark-vm-test");
  VmReaper kill_vms{dir.file("state") + "/sandboxes"};  // a failed test must not leave its VMs running
  const std::string driver_id = "vm-it-" + random_hex(3);
  VmDriver driver(nats.url(), dir.file("state"), vm_dir, dir.file("driver.log"), driver_id);
  driver.start();
  auto op = [&](const std::string& name) { return subjects::driver_op(driver_id, name); };

  // Up once it heartbeats (after the KVM probe).
  std::atomic<int> beats{0};
  std::atomic<bool> draining{false};
  auto hb_sub = bus->subscribe(subjects::kDriverHeartbeat, [&](Msg& m) {
    v1::DriverHeartbeat hb;
    if (hb.ParseFromArray(m.data().data(), static_cast<int>(m.data().size())) && hb.driver_id() == driver_id &&
        hb.kind() == "vm") {
      ++beats;
      if (hb.draining()) draining = true;
    }
  });
  REQUIRE_MESSAGE(wait_until([&] { return beats >= 1; }, 30s), "driver-vm sent no heartbeat:\n" << driver.log());
  // KVM here cannot boot a stock kernel: auto must say so and take TCG.
  CHECK(driver.log().find("accel tcg") != std::string::npos);

  auto caps = bus->request<v1::DriverCapabilities>(op("capabilities"), v1::DriverCapabilitiesRequest(), 5s);
  CHECK(caps.isolation() == "microvm");
  CHECK_FALSE(caps.gpu());
  CHECK(caps.stop_start());

  // GPUs are refused with a pointer to the VFIO notes, in validate and in create.
  v1::SandboxSpec spec;
  spec.set_name("vm-one");
  spec.set_image(image);
  spec.mutable_resources()->set_gpus(1);
  for (const char* what : {"validate", "create"}) {
    try {
      if (std::string(what) == "validate") {
        v1::DriverValidateRequest vr;
        *vr.mutable_spec() = spec;
        bus->request<v1::DriverValidateReply>(op("validate"), vr, 10s);
      } else {
        v1::DriverCreateRequest cr;
        cr.set_sandbox_id("gpu-" + random_hex(3));
        *cr.mutable_spec() = spec;
        bus->request<v1::DriverCreateReply>(op("create"), cr, 10s);
      }
      FAIL(what << " accepted a GPU");
    } catch (const Error& e) {
      CHECK(e.field() == "resources.gpus");
      CHECK(std::string(e.what()).find("VFIO") != std::string::npos);
    }
  }
  // A missing image names the field and how to get it there.
  {
    v1::DriverValidateRequest vr;
    vr.mutable_spec()->set_image("localhost/no-such-image:latest");
    try {
      bus->request<v1::DriverValidateReply>(op("validate"), vr, 10s);
      FAIL("a missing image was accepted");
    } catch (const Error& e) {
      CHECK(e.field() == "image");
      CHECK(std::string(e.what()).find("build-base-image") != std::string::npos);
    }
  }

  // The agent: on the first boot it leaves a file on its disk and waits; on the second it finds
  // the file (the disk survived stop/start) and exits 7.
  spec.mutable_resources()->set_gpus(0);
  spec.mutable_resources()->set_cpus(1);
  spec.mutable_resources()->set_pids(256);
  spec.add_command("sh");
  spec.add_command("-c");
  spec.add_command(
      "if [ -f /sandbox/vm-marker ]; then echo second-boot-found-$(cat /sandbox/vm-marker); exit 7; fi; "
      "echo kept > /sandbox/vm-marker && sync && echo hello-from-vm; sleep 600");
  (*spec.mutable_env())["GREETING"] = "hi";
  const std::string id = "vm-" + random_hex(4);
  Watch w;
  auto sub = bus->subscribe("bulwark.sandbox." + id + ".>", [&](Msg& m) {
    std::lock_guard lock(w.mu);
    if (m.subject().size() > 6 && m.subject().substr(m.subject().size() - 6) == ".state") {
      v1::StateReport r;
      if (r.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) {
        w.reports.push_back(r);
        w.timed.emplace_back(std::chrono::steady_clock::now(), r);
      }
    } else {
      v1::LogLine l;
      if (l.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) w.lines.push_back(l);
    }
  });

  v1::DriverCreateRequest cr;
  cr.set_sandbox_id(id);
  *cr.mutable_spec() = spec;
  auto t_create = std::chrono::steady_clock::now();
  auto created = bus->request<v1::DriverCreateReply>(op("create"), cr, 120s);
  double create_s = secs_since(t_create);
  CHECK(created.workload_id() == "bulwark-" + id);
  CHECK_FALSE(created.adopted());
  const std::string sdir = dir.file("state") + "/sandboxes/" + id;
  auto fail_info = [&] {
    return w.dump() + "\n--- console.log:\n" + read_file(sdir + "/console.log") + "\n--- driver.log:\n" + driver.log();
  };
  REQUIRE_MESSAGE(wait_until([&] { return w.count(v1::REPORT_WORKLOAD_RUNNING, v1::SOURCE_DRIVER) >= 1; }, 10s), fail_info());
  double running_s = secs_since(t_create);
  REQUIRE_MESSAGE(
      wait_until([&] { return w.count(v1::REPORT_SUPERVISOR_CHECKED_IN, v1::SOURCE_SUPERVISOR) >= 1; }, 90s), fail_info());
  double checkin_s = std::chrono::duration<double>(*w.first_at(v1::REPORT_SUPERVISOR_CHECKED_IN, v1::SOURCE_SUPERVISOR) - t_create).count();
  REQUIRE_MESSAGE(wait_until([&] { return w.logged("hello-from-vm"); }, 30s), fail_info());
  MESSAGE("create reply " << create_s << " s (first use builds the image's ext4), RUNNING " << running_s
                          << " s, supervisor check-in " << checkin_s << " s after create");
  // A repeated create adopts, never duplicates.
  CHECK(bus->request<v1::DriverCreateReply>(op("create"), cr, 30s).adopted());
  v1::DriverGetRequest gr;
  gr.set_sandbox_id(id);
  CHECK(bus->request<v1::WorkloadStatus>(op("get"), gr, 5s).running());
  // The console log holds the guest's boot: the kernel, the init stages and the supervisor's own log.
  CHECK(read_file(sdir + "/console.log").find("[supervisor] sandbox " + id + ": confined") != std::string::npos);

  // The driver restarts; the VM does not notice, and the new driver reports it running again.
  auto qemu_pid = read_file(sdir + "/qemu.pid");
  size_t running_before = w.count(v1::REPORT_WORKLOAD_RUNNING, v1::SOURCE_DRIVER);
  driver.stop();
  CHECK(draining);
  CHECK(fs::exists("/proc/" + std::to_string(std::stoi(qemu_pid))));
  driver.start();
  REQUIRE_MESSAGE(
      wait_until([&] { return w.count(v1::REPORT_WORKLOAD_RUNNING, v1::SOURCE_DRIVER) > running_before; }, 30s),
      fail_info());
  v1::DriverListReply listed = bus->request<v1::DriverListReply>(op("list"), v1::DriverListRequest(), 5s);
  REQUIRE(listed.workloads_size() == 1);
  CHECK(listed.workloads(0).sandbox_id() == id);
  CHECK(listed.workloads(0).running());
  CHECK(read_file(sdir + "/qemu.pid") == qemu_pid);

  // Stop is graceful (the guest's init passes SIGTERM to the supervisor, which passes it to the
  // agent and reports its end) and keeps the disk; the driver reports the VM ended.
  v1::DriverStopRequest stop;
  stop.set_sandbox_id(id);
  stop.set_grace_ms(20000);
  auto t_stop = std::chrono::steady_clock::now();
  CHECK(bus->request<v1::DriverStopReply>(op("stop"), stop, 40s).existed());
  double stop_s = secs_since(t_stop);
  REQUIRE_MESSAGE(wait_until([&] { return w.count(v1::REPORT_WORKLOAD_EXITED, v1::SOURCE_DRIVER) >= 1; }, 10s), fail_info());
  CHECK(w.last(v1::REPORT_WORKLOAD_EXITED, v1::SOURCE_DRIVER)->exit_code() == 143);
  CHECK(read_file(sdir + "/console.log").find("bulwark-vm: supervisor exited with 143") != std::string::npos);
  REQUIRE(w.last(v1::REPORT_AGENT_EXITED, v1::SOURCE_SUPERVISOR));
  CHECK(w.last(v1::REPORT_AGENT_EXITED, v1::SOURCE_SUPERVISOR)->exit_code() == 143);
  CHECK(driver.log().find("did not power off") == std::string::npos);
  MESSAGE("graceful stop " << stop_s << " s");
  CHECK_FALSE(bus->request<v1::WorkloadStatus>(op("get"), gr, 5s).running());

  // Start boots the same disk: the agent finds its file and exits 7; the guest powers off and the
  // driver reports the supervisor's code.
  v1::DriverStartRequest start;
  start.set_sandbox_id(id);
  CHECK(bus->request<v1::DriverStartReply>(op("start"), start, 60s).workload_id() == "bulwark-" + id);
  REQUIRE_MESSAGE(wait_until([&] { return w.count(v1::REPORT_WORKLOAD_EXITED, v1::SOURCE_DRIVER) >= 2; }, 90s), fail_info());
  CHECK(w.last(v1::REPORT_WORKLOAD_EXITED, v1::SOURCE_DRIVER)->exit_code() == 7);
  CHECK(w.logged("second-boot-found-kept"));
  auto agent_exit = w.last(v1::REPORT_AGENT_EXITED, v1::SOURCE_SUPERVISOR);
  REQUIRE(agent_exit);
  CHECK(agent_exit->exit_code() == 7);
  CHECK(read_file(sdir + "/console.log").find("bulwark-vm: supervisor exited with 7") != std::string::npos);
  auto st = bus->request<v1::WorkloadStatus>(op("get"), gr, 5s);
  CHECK(st.exited());
  CHECK(st.exit_code() == 7);

  // Delete removes the VM and its state; a second delete finds nothing.
  v1::DriverDeleteRequest del;
  del.set_sandbox_id(id);
  CHECK(bus->request<v1::DriverDeleteReply>(op("delete"), del, 20s).existed());
  CHECK_FALSE(fs::exists(sdir));
  CHECK_FALSE(bus->request<v1::DriverDeleteReply>(op("delete"), del, 20s).existed());
  try {
    bus->request<v1::WorkloadStatus>(op("get"), gr, 5s);
    FAIL("get found a deleted VM");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kNotFound);
  }
  driver.stop();
  MESSAGE("whole test " << secs_since(t_all) << " s");
}
