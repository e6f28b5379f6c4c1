// driver-k8s end to end against a FAKE Kubernetes API server (no real one runs on these machines):
// a real nats-server, the real bulwark-driver-k8s binary with a kubeconfig pointing at
// tests/support/fake_kube_api.h, which checks every Sandbox it stores against the agent-sandbox
// CRD's schema, plays the controller, and streams watch events. The driver contract is driven
// over NATS (bulwark.driver.<driver_id>.<op>), without the gateway, to keep it fast.
#include <doctest/doctest.h>

#include <mutex>

#include "bulwark/v1/driver.pb.h"
#include "services/driver-k8s/sandbox_resource.h"
#include "shared/bus.h"
#include "shared/subjects.h"
#include "shared/util.h"
#include "tests/support/fake_kube_api.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr const char* kNs = "agents";

std::string bin(const std::string& name) { return std::string(BULWARK_BIN_DIR) + "/" + name; }

class K8sSuite {
 public:
  explicit K8sSuite(FakeKubeApiOptions o = {}, std::string token = "bulwark-test-token")
      : api_(std::move(o)), driver_id_("k8s-it-" + random_hex(3)) {
    bus_ = Bus::connect({nats_.url(), "k8s-test"});
    // The gateway owns this stream in a full deployment; the driver's reports go there.
    bus_->ensure_stream(subjects::kSandboxStream, {subjects::kSandboxAll}, std::chrono::seconds(3600));
    reports_sub_ = bus_->subscribe("bulwark.sandbox.*.state", [this](Msg& m) {
      v1::StateReport r;
      if (!r.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) return;
      std::lock_guard lock(mu_);
      reports_.push_back(r);
    });
    beats_sub_ = bus_->subscribe(subjects::kDriverHeartbeat, [this](Msg& m) {
      v1::DriverHeartbeat hb;
      if (!hb.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) return;
      std::lock_guard lock(mu_);
      if (hb.driver_id() == driver_id_) last_beat_ = hb;
    });
    kubeconfig_ = api_.write_kubeconfig(dir_.path(), token, kNs);
  }
  ~K8sSuite() { driver_.stop(); }

  void start_driver(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {bin("bulwark-driver-k8s"), "--nats-url", nats_.url(), "--kubeconfig", kubeconfig_,
                                     "--driver-id", driver_id_, "--supervisor-image", "registry.test/bulwark/supervisor:1",
                                     "--heartbeat", "0.2", "--poll", "0.2", "--gpus", "4", "--log-level", "debug"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    {
      std::lock_guard lock(mu_);
      last_beat_.reset();
    }
    driver_ = Process::spawn({.argv = argv, .output_file = dir_.file("driver.log")});
  }
  void wait_driver_ready() {
    bool up = wait_until(
        [&] {
          std::lock_guard lock(mu_);
          return last_beat_.has_value();
        },
        15s);
    REQUIRE_MESSAGE(up, "driver-k8s sent no heartbeat:\n" << log());
  }
  std::string log() { return read_file(dir_.file("driver.log")); }

  template <class Rep>
  Rep call(const std::string& op, const google::protobuf::Message& req) {
    return bus_->request<Rep>(subjects::driver_op(driver_id_, op), req, 10s);
  }
  v1::DriverCreateReply create(const std::string& id, const v1::SandboxSpec& spec) {
    v1::DriverCreateRequest r;
    r.set_sandbox_id(id);
    *r.mutable_spec() = spec;
    return call<v1::DriverCreateReply>("create", r);
  }
  v1::WorkloadStatus get(const std::string& id) {
    v1::DriverGetRequest r;
    r.set_sandbox_id(id);
    return call<v1::WorkloadStatus>("get", r);
  }
  bool stop(const std::string& id) {
    v1::DriverStopRequest r;
    r.set_sandbox_id(id);
    return call<v1::DriverStopReply>("stop", r).existed();
  }
  std::string start(const std::string& id) {
    v1::DriverStartRequest r;
    r.set_sandbox_id(id);
    return call<v1::DriverStartReply>("start", r).workload_id();
  }
  bool remove(const std::string& id) {
    v1::DriverDeleteRequest r;
    r.set_sandbox_id(id);
    return call<v1::DriverDeleteReply>("delete", r).existed();
  }

  // Waits for the count-th report of `kind` for the sandbox (1 = the first).
  std::optional<v1::StateReport> report(const std::string& id, v1::ReportKind kind, int count = 1,
                                        std::chrono::milliseconds timeout = 10s) {
    std::optional<v1::StateReport> found;
    wait_until(
        [&] {
          std::lock_guard lock(mu_);
          int n = 0;
          for (const auto& r : reports_)
            if (r.sandbox_id() == id && r.kind() == kind && ++n == count) {
              found = r;
              return true;
            }
          return false;
        },
        timeout);
    return found;
  }
  int reports_of(const std::string& id, v1::ReportKind kind) {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& r : reports_) n += r.sandbox_id() == id && r.kind() == kind;
    return n;
  }
  std::optional<v1::DriverHeartbeat> beat() {
    std::lock_guard lock(mu_);
    return last_beat_;
  }

  NatsServer nats_;
  FakeKubeApi api_;
  TempDir dir_{"bulwark-k8s-test"};
  std::string driver_id_;
  std::string kubeconfig_;
  std::unique_ptr<Bus> bus_;
  Process driver_;

 private:
  std::mutex mu_;
  std::vector<v1::StateReport> reports_;
  std::optional<v1::DriverHeartbeat> last_beat_;
  Subscription reports_sub_, beats_sub_;
};

v1::SandboxSpec spec(uint32_t gpus = 0) {
  v1::SandboxSpec s;
  s.set_name("k8s-hello");
  s.set_image("busybox:1.36");
  s.add_command("sleep");
  s.add_command("infinity");
  (*s.mutable_labels())["team"] = "ml";
  s.mutable_resources()->set_cpus(0.5);
  s.mutable_resources()->set_memory_bytes(256ull << 20);
  s.mutable_resources()->set_gpus(gpus);
  return s;
}

const CrdSchema& crd() {
  static CrdSchema s = CrdSchema::load(sandbox_crd_path());
  return s;
}

std::string name_of(const std::string& id) { return "bw-" + id; }

}  // namespace

TEST_CASE("create -> a schema-valid v1beta1 Sandbox with GPU limits, RUNNING; stop/start; exit code; delete") {
  K8sSuite s;
  s.start_driver();
  s.wait_driver_ready();
  CHECK(s.beat()->kind() == "kubernetes");
  CHECK(s.beat()->gpus_free() == 4);

  v1::DriverCapabilitiesRequest cr;
  auto caps = s.call<v1::DriverCapabilities>("capabilities", cr);
  CHECK(caps.isolation() == "pod");
  CHECK(caps.gpu());
  CHECK(caps.stop_start());

  const std::string id = random_hex(8);
  auto reply = s.create(id, spec(2));
  CHECK(reply.workload_id() == std::string(kNs) + "/" + name_of(id));
  CHECK_FALSE(reply.adopted());

  auto obj = s.api_.object(kNs, name_of(id));
  REQUIRE(obj);
  CHECK((*obj)["apiVersion"] == "agents.x-k8s.io/v1beta1");
  auto errs = crd().validate("v1beta1", *obj);
  CHECK_MESSAGE(errs.empty(), (errs.empty() ? "" : errs[0]));
  CHECK(s.api_.rejections().empty());
  const auto& agent = (*obj)["spec"]["podTemplate"]["spec"]["containers"][0];
  // sandbox create --gpu 2 becomes the pod's nvidia.com/gpu limit.
  CHECK(agent["resources"]["limits"]["nvidia.com/gpu"] == "2");
  CHECK(agent["resources"]["limits"]["cpu"] == "500m");
  CHECK(agent["resources"]["limits"]["memory"] == "268435456");
  CHECK(agent["command"][3] == "/.bulwark/bin/bulwark-supervisor");
  CHECK((*obj)["metadata"]["labels"]["io.bulwark.driver_id"] == s.driver_id_);
  CHECK((*obj)["metadata"]["labels"]["io.bulwark.label.team"] == "ml");
  CHECK((*obj)["spec"]["podTemplate"]["spec"]["initContainers"][0]["image"] == "registry.test/bulwark/supervisor:1");

  REQUIRE(s.report(id, v1::REPORT_WORKLOAD_RUNNING));
  CHECK(s.get(id).running());
  CHECK(wait_until([&] { return s.beat()->gpus_free() == 2; }, 5s));

  // Idempotent create: adopted, not duplicated.
  CHECK(s.create(id, spec(2)).adopted());
  CHECK(s.api_.objects(kNs).size() == 1);

  // Stop: operatingMode Suspended, reported EXITED; start: Running again.
  CHECK(s.stop(id));
  CHECK((*s.api_.object(kNs, name_of(id)))["spec"]["operatingMode"] == "Suspended");
  REQUIRE(s.report(id, v1::REPORT_WORKLOAD_EXITED));
  auto st = s.get(id);
  CHECK_FALSE(st.running());
  CHECK(st.exited());
  CHECK(s.start(id) == std::string(kNs) + "/" + name_of(id));
  CHECK((*s.api_.object(kNs, name_of(id)))["spec"]["operatingMode"] == "Running");
  CHECK(wait_until([&] { return s.get(id).running(); }, 5s));

  // The agent ends (the kubelet's pod status): its exit code reaches the report.
  s.api_.terminate_pod(kNs, name_of(id), 3, "Error");
  auto exited = s.report(id, v1::REPORT_WORKLOAD_EXITED, 2);
  REQUIRE(exited);
  CHECK(exited->exit_code() == 3);

  // Started again after ending on its own: a new pod replaces the ended one.
  CHECK(s.start(id) == std::string(kNs) + "/" + name_of(id));
  CHECK(wait_until([&] { return s.get(id).running(); }, 5s));
  CHECK((*s.api_.object(kNs, name_of(id)))["spec"]["operatingMode"] == "Running");

  CHECK(s.remove(id));
  CHECK_FALSE(s.api_.object(kNs, name_of(id)));
  CHECK_FALSE(s.remove(id));
  v1::DriverListRequest lr;
  CHECK(s.call<v1::DriverListReply>("list", lr).workloads_size() == 0);
  CHECK_THROWS_AS(s.get(id), Error);
  CHECK(s.api_.rejections().empty());
}

TEST_CASE("validate and create refuse what Kubernetes would, naming the field") {
  K8sSuite s;
  s.start_driver();
  s.wait_driver_ready();
  auto bad = spec();
  (*bad.mutable_labels())["team"] = "not a label value";
  v1::DriverValidateRequest vr;
  *vr.mutable_spec() = bad;
  try {
    s.call<v1::DriverValidateReply>("validate", vr);
    FAIL("validate must refuse");
  } catch (const Error& e) {
    CHECK(e.field() == "labels");
  }
  auto too_many = spec(8);
  try {
    s.create(random_hex(8), too_many);
    FAIL("more GPUs than --gpus must be refused");
  } catch (const Error& e) {
    CHECK(e.field() == "resources.gpus");
  }
  CHECK(s.api_.objects(kNs).empty());
}

TEST_CASE("a cluster with only v1alpha1: replicas instead of operatingMode") {
  K8sSuite s({.versions = {"v1alpha1"}});
  s.start_driver();
  s.wait_driver_ready();
  const std::string id = random_hex(8);
  s.create(id, spec(1));
  auto obj = s.api_.object(kNs, name_of(id));
  REQUIRE(obj);
  CHECK((*obj)["apiVersion"] == "agents.x-k8s.io/v1alpha1");
  CHECK((*obj)["spec"]["replicas"] == 1);
  CHECK_FALSE((*obj)["spec"].contains("operatingMode"));
  CHECK(crd().validate("v1alpha1", *obj).empty());
  REQUIRE(s.report(id, v1::REPORT_WORKLOAD_RUNNING));
  CHECK(s.stop(id));
  CHECK((*s.api_.object(kNs, name_of(id)))["spec"]["replicas"] == 0);
  REQUIRE(s.report(id, v1::REPORT_WORKLOAD_EXITED));
  s.start(id);
  CHECK((*s.api_.object(kNs, name_of(id)))["spec"]["replicas"] == 1);
  CHECK(wait_until([&] { return s.get(id).running(); }, 5s));
  CHECK(s.api_.rejections().empty());
  CHECK(s.log().find("v1alpha1") != std::string::npos);
}

TEST_CASE("reconcile: objects deleted or created behind the driver's back, and at restart") {
  K8sSuite s;
  s.start_driver();
  s.wait_driver_ready();
  const std::string a = random_hex(8);
  s.create(a, spec());
  REQUIRE(s.report(a, v1::REPORT_WORKLOAD_RUNNING));

  // kubectl delete sandbox: the watch sees it, the driver reports GONE.
  CHECK(s.api_.delete_object(kNs, name_of(a)));
  auto gone = s.report(a, v1::REPORT_WORKLOAD_GONE);
  REQUIRE(gone);
  CHECK_FALSE(gone->reason().empty());

  // A Sandbox with this driver's labels appears while it runs (another replica, a restore).
  k8s::ResourceConfig rc;
  rc.driver_id = s.driver_id_;
  rc.namespace_name = kNs;
  rc.nats_url = "nats://x:4222";
  rc.supervisor_image = "sup:1";
  const std::string b = random_hex(8);
  s.api_.put_object(kNs, k8s::sandbox_body("v1beta1", b, spec(), rc));
  REQUIRE(s.report(b, v1::REPORT_WORKLOAD_RUNNING));

  // While the driver is down: one is deleted, one appears, one of another driver too. It stops
  // cleanly on SIGTERM, its watch cancelled.
  CHECK(s.driver_.stop() == 0);
  const std::string c = random_hex(8);
  s.api_.put_object(kNs, k8s::sandbox_body("v1beta1", c, spec(), rc));
  auto other = rc;
  other.driver_id = "someone-else";
  const std::string d = random_hex(8);
  s.api_.put_object(kNs, k8s::sandbox_body("v1beta1", d, spec(), other));
  s.start_driver();
  s.wait_driver_ready();
  REQUIRE(s.report(c, v1::REPORT_WORKLOAD_RUNNING));
  CHECK(s.reports_of(b, v1::REPORT_WORKLOAD_RUNNING) >= 2);  // reported again after the restart (harmless)
  v1::DriverListRequest lr;
  auto listed = s.call<v1::DriverListReply>("list", lr);
  std::set<std::string> ids;
  for (const auto& w : listed.workloads()) ids.insert(w.sandbox_id());
  CHECK(ids == std::set<std::string>{b, c});
  CHECK(s.reports_of(d, v1::REPORT_WORKLOAD_RUNNING) == 0);
  CHECK(s.api_.objects(kNs).size() == 3);  // the driver never removes on its own judgement

  // A watch that expires (410) is renewed by a fresh list: changes after it still arrive.
  // Every change above reached the driver by its watch (list per poll is only the fallback).
  CHECK(wait_until([&] { return s.api_.requests("GET?watch") >= 2; }, 10s));
  int watches = s.api_.requests("GET?watch");
  // The watch ends and its resourceVersion has expired (410 Gone): the driver lists again and
  // watches from there, and a change made after that still arrives.
  s.api_.compact();
  s.api_.drop_watches();
  CHECK(wait_until([&] { return s.api_.requests("GET?watch") >= watches + 2; }, 10s));
  CHECK(s.api_.delete_object(kNs, name_of(c)));
  REQUIRE(s.report(c, v1::REPORT_WORKLOAD_GONE));
  CHECK(s.log().find("watch expired (too old resource version") != std::string::npos);
}

TEST_CASE("a bad token stops the driver at start with a clear error") {
  K8sSuite s({}, "not-the-token");
  s.start_driver();
  auto code = s.driver_.wait_for(15s);
  REQUIRE_MESSAGE(code.has_value(), "the driver kept running with a token the API server refuses");
  CHECK(*code != 0);
  auto log = s.log();
  CHECK_MESSAGE(log.find("Unauthorized") != std::string::npos, log);
  CHECK_MESSAGE(log.find("token") != std::string::npos, log);
  CHECK(s.api_.unauthorized() >= 1);
  CHECK_FALSE(s.beat());
}
