// DriverHost over a real nats-server with an in-memory backend: the contract every driver
// inherits (ops over NATS, reports on change only, reconcile at start, heartbeat contents).
#include "shared/driver_host.h"

#include <doctest/doctest.h>

#include <deque>

#include "shared/subjects.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace std::chrono_literals;

namespace {

class MemoryBackend : public DriverBackend {
 public:
  std::mutex mu;
  std::map<std::string, v1::WorkloadStatus> w;
  int creates = 0;
  bool create_exited = false;          // the workload dies as soon as it is created
  bool started_while_running = false;  // start() found the previous run still running
  std::function<void()> after_change;  // runs once stop() or start() took effect, before it returns

  void capabilities(v1::DriverCapabilities& caps) const override {
    caps.set_isolation("container");
    caps.set_stop_start(true);
  }
  std::vector<std::string> validate(const v1::SandboxSpec& spec) override {
    if (spec.resources().gpus() > 0) throw Error(Code::kInvalidArgument, "no GPUs here", "resources.gpus");
    return {"cpus rounded"};
  }
  v1::DriverCreateReply create(const std::string& id, const v1::SandboxSpec&) override {
    std::unique_lock l(mu);
    v1::DriverCreateReply r;
    r.set_workload_id("w-" + id);
    if (w.count(id)) {
      r.set_adopted(true);
      return r;
    }
    ++creates;
    auto& st = w[id];
    st.set_sandbox_id(id);
    st.set_workload_id("w-" + id);
    st.set_running(!create_exited);
    st.set_exited(create_exited);
    l.unlock();
    if (after_change) after_change();
    return r;
  }
  bool remove(const std::string& id) override {
    std::lock_guard l(mu);
    return w.erase(id) > 0;
  }
  bool stop(const std::string& id, std::chrono::milliseconds) override {
    {
      std::lock_guard l(mu);
      auto it = w.find(id);
      if (it == w.end()) return false;
      it->second.set_running(false);
      it->second.set_exited(true);
      it->second.set_exit_code(143);
    }
    if (after_change) after_change();
    return true;
  }
  std::string start(const std::string& id) override {
    std::string workload;
    {
      std::lock_guard l(mu);
      auto it = w.find(id);
      if (it == w.end()) throw Error(Code::kNotFound, "none", "sandbox_id");
      started_while_running = started_while_running || it->second.running();
      it->second.set_running(true);
      it->second.set_exited(false);
      workload = it->second.workload_id();
    }
    if (after_change) after_change();
    return workload;
  }
  std::optional<v1::WorkloadStatus> get(const std::string& id) override {
    std::lock_guard l(mu);
    auto it = w.find(id);
    if (it == w.end()) return std::nullopt;
    return it->second;
  }
  std::vector<v1::WorkloadStatus> list() override {
    std::lock_guard l(mu);
    std::vector<v1::WorkloadStatus> out;
    for (auto& [id, st] : w) out.push_back(st);
    return out;
  }
  uint32_t gpus_free() override { return 3; }
};

// Collects the state reports drivers publish (a core subscription sees JetStream publishes too).
struct Reports {
  std::mutex mu;
  std::deque<v1::StateReport> got;
  Subscription sub;
  explicit Reports(Bus& bus) {
    sub = bus.subscribe("bulwark.sandbox.*.state", [this](Msg& m) {
      v1::StateReport r;
      r.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()));
      std::lock_guard l(mu);
      got.push_back(r);
    });
  }
  std::vector<v1::ReportKind> kinds(const std::string& id) {
    std::lock_guard l(mu);
    std::vector<v1::ReportKind> k;
    for (auto& r : got)
      if (r.sandbox_id() == id) k.push_back(r.kind());
    return k;
  }
};

}  // namespace

TEST_CASE("DriverHost serves the contract over NATS and reports each change once") {
  testing::NatsServer nats;
  auto bus = Bus::connect({.url = nats.url()});
  bus->ensure_stream(subjects::kSandboxStream, {subjects::kSandboxAll}, std::chrono::hours(1));
  Reports reports(*bus);

  v1::DriverHeartbeat beat;
  std::mutex beat_mu;
  auto beats = bus->subscribe(subjects::kDriverHeartbeat, [&](Msg& m) {
    std::lock_guard l(beat_mu);
    beat.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()));
  });

  auto backend = std::make_unique<MemoryBackend>();
  auto* mem = backend.get();
  {  // a workload left by a previous run: reported before the first heartbeat
    auto& st = mem->w["left"];
    st.set_sandbox_id("left");
    st.set_workload_id("w-left");
    st.set_exited(true);
    st.set_exit_code(7);
  }
  DriverHostOptions o{.driver_id = "mem-1", .kind = "memory", .capacity = 4, .labels = {{"zone", "a"}},
                      .heartbeat = 50ms, .poll = 50ms};
  DriverHost host(*bus, std::move(backend), o);
  auto op = [&](const std::string& name) { return subjects::driver_op("mem-1", name); };

  REQUIRE(testing::wait_until([&] { return reports.kinds("left") == std::vector{v1::REPORT_WORKLOAD_EXITED}; }, 5s));

  auto caps = bus->request<v1::DriverCapabilities>(op("capabilities"), v1::DriverCapabilitiesRequest(), 2s);
  CHECK(caps.kind() == "memory");
  CHECK(caps.driver_id() == "mem-1");
  CHECK(caps.stop_start());

  v1::DriverValidateRequest vr;
  CHECK(bus->request<v1::DriverValidateReply>(op("validate"), vr, 2s).warnings(0) == "cpus rounded");
  vr.mutable_spec()->mutable_resources()->set_gpus(1);
  try {
    bus->request<v1::DriverValidateReply>(op("validate"), vr, 2s);
    FAIL("validate accepted GPUs");
  } catch (const Error& e) {
    CHECK(e.field() == "resources.gpus");
  }

  v1::DriverCreateRequest cr;
  cr.set_sandbox_id("sb1");
  auto created = bus->request<v1::DriverCreateReply>(op("create"), cr, 2s);
  CHECK(created.workload_id() == "w-sb1");
  CHECK_FALSE(created.adopted());
  CHECK(bus->request<v1::DriverCreateReply>(op("create"), cr, 2s).adopted());
  CHECK(mem->creates == 1);

  v1::DriverStopRequest stop;
  stop.set_sandbox_id("sb1");
  CHECK(bus->request<v1::DriverStopReply>(op("stop"), stop, 2s).existed());
  REQUIRE(testing::wait_until([&] {
    return reports.kinds("sb1") == std::vector{v1::REPORT_WORKLOAD_RUNNING, v1::REPORT_WORKLOAD_EXITED};
  }, 5s));
  v1::DriverStartRequest start;
  start.set_sandbox_id("sb1");
  CHECK(bus->request<v1::DriverStartReply>(op("start"), start, 2s).workload_id() == "w-sb1");
  std::this_thread::sleep_for(200ms);  // several polls: the restart is reported once, not again
  CHECK(reports.kinds("sb1") ==
        std::vector{v1::REPORT_WORKLOAD_RUNNING, v1::REPORT_WORKLOAD_EXITED, v1::REPORT_WORKLOAD_RUNNING});

  {  // removed behind the driver's back
    std::lock_guard l(mem->mu);
    mem->w.erase("sb1");
  }
  REQUIRE(testing::wait_until([&] { return reports.kinds("sb1").back() == v1::REPORT_WORKLOAD_GONE; }, 5s));

  v1::DriverGetRequest gr;
  gr.set_sandbox_id("sb1");
  try {
    bus->request<v1::WorkloadStatus>(op("get"), gr, 2s);
    FAIL("get found a removed workload");
  } catch (const Error& e) {
    CHECK(e.code() == Code::kNotFound);
  }
  gr.set_sandbox_id("bad id!");
  CHECK_THROWS_AS(bus->request<v1::WorkloadStatus>(op("get"), gr, 2s), Error);

  REQUIRE(testing::wait_until([&] {
    std::lock_guard l(beat_mu);
    return beat.driver_id() == "mem-1";
  }, 5s));
  std::lock_guard l(beat_mu);
  CHECK(beat.kind() == "memory");
  CHECK(beat.labels().at("zone") == "a");
  CHECK(beat.gpus_free() == 3);
  CHECK(beat.capacity() == 4);
  CHECK(beat.free_slots() == 4);  // "left" exited, sb1 gone: nothing holds a slot
}

namespace {

// A DriverHost over a fresh nats-server and a MemoryBackend, and the reports it publishes.
struct HostFixture {
  testing::NatsServer nats;
  std::unique_ptr<Bus> bus;
  std::unique_ptr<Reports> reports;
  MemoryBackend* mem = nullptr;
  std::unique_ptr<DriverHost> host;

  HostFixture(const std::string& driver_id, std::chrono::milliseconds poll, bool create_exited = false) {
    bus = Bus::connect({.url = nats.url()});
    bus->ensure_stream(subjects::kSandboxStream, {subjects::kSandboxAll}, std::chrono::hours(1));
    reports = std::make_unique<Reports>(*bus);
    auto backend = std::make_unique<MemoryBackend>();
    mem = backend.get();
    mem->create_exited = create_exited;
    DriverHostOptions o{.driver_id = driver_id, .kind = "memory", .capacity = 4, .heartbeat = 1h, .poll = poll};
    host = std::make_unique<DriverHost>(*bus, std::move(backend), o);
  }
  template <class Req>
  static Req request(const std::string& id) {
    Req r;
    r.set_sandbox_id(id);
    return r;
  }
  // The reports of `id` are exactly `want`, also a moment after they arrived (a duplicate would show).
  void expect(const std::string& id, const std::vector<v1::ReportKind>& want) {
    REQUIRE(testing::wait_until([&] { return reports->kinds(id).size() >= want.size(); }, 5s));
    std::this_thread::sleep_for(200ms);
    CHECK(reports->kinds(id) == want);
  }
};

}  // namespace

TEST_CASE("a poll that sees a stop or start in flight and the call's own report make one report, not two") {
  // As the k8s backend does: the resource says Suspended while stop() still waits for the pod.
  HostFixture f("mem-2", 1h);
  f.mem->after_change = [&] { f.host->poll(); };
  f.host->create(HostFixture::request<v1::DriverCreateRequest>("sb2"));
  CHECK(f.host->stop_workload(HostFixture::request<v1::DriverStopRequest>("sb2")).existed());
  f.host->start_workload(HostFixture::request<v1::DriverStartRequest>("sb2"));
  f.host->poll();
  f.expect("sb2", {v1::REPORT_WORKLOAD_RUNNING, v1::REPORT_WORKLOAD_EXITED, v1::REPORT_WORKLOAD_RUNNING});
}

TEST_CASE("a start waits for the previous run to end, reports RUNNING, and never that run's late exit") {
  // The agent ended (the gateway says EXITED) but the workload has not yet: the last report says
  // running. Polls every 20 ms meanwhile: the old run's exit must not appear.
  HostFixture f("mem-3", 20ms);
  f.host->create(HostFixture::request<v1::DriverCreateRequest>("sb3"));
  std::thread ends([&] {  // the supervisor finishing: the workload ends 300 ms into the start
    std::this_thread::sleep_for(300ms);
    std::lock_guard l(f.mem->mu);
    f.mem->w["sb3"].set_running(false);
    f.mem->w["sb3"].set_exited(true);
  });
  f.host->start_workload(HostFixture::request<v1::DriverStartRequest>("sb3"));
  ends.join();
  CHECK_FALSE(f.mem->started_while_running);
  f.expect("sb3", {v1::REPORT_WORKLOAD_RUNNING, v1::REPORT_WORKLOAD_RUNNING});
}

TEST_CASE("a create whose workload dies at once reports RUNNING then EXITED, even with a poll inside the create") {
  HostFixture f("mem-4", 1h, /*create_exited=*/true);
  f.mem->after_change = [&] { f.host->poll(); };
  f.host->create(HostFixture::request<v1::DriverCreateRequest>("sb4"));
  f.host->poll();
  f.expect("sb4", {v1::REPORT_WORKLOAD_RUNNING, v1::REPORT_WORKLOAD_EXITED});
}

TEST_CASE("normalize_driver_id lower-cases and refuses what is not a subject token") {
  CHECK(normalize_driver_id("Podman-Host1") == "podman-host1");
  CHECK_THROWS_AS(normalize_driver_id("a.b"), Error);
  CHECK_THROWS_AS(normalize_driver_id(""), Error);
}

TEST_CASE("parse_labels takes KEY=VALUE and names the flag otherwise") {
  CHECK(parse_labels({"zone=a", "gpu=", "x=y=z"}, "label") ==
        std::map<std::string, std::string>{{"zone", "a"}, {"gpu", ""}, {"x", "y=z"}});
  try {
    parse_labels({"novalue"}, "label");
    FAIL("accepted a pair without '='");
  } catch (const Error& e) {
    CHECK(e.field() == "label");
  }
  CHECK_THROWS_AS(parse_labels({"=v"}, "label"), Error);
}
