// The inference client against a real nats-server and a tiny fake privacy-router (a queue
// subscriber on bulwark.inference.call.<id> answering with InferenceFrames on the reply subject).
#include "supervisor/inference_client.h"

#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "bulwark/v1/inference.pb.h"
#include "shared/subjects.h"
#include "tests/support/support.h"

using namespace bulwark;
using namespace bulwark::supervisor;
using namespace std::chrono_literals;
using proxy::HeaderField;
using proxy::InferenceRequest;
using proxy::InferenceSink;

namespace {

constexpr char kSandbox[] = "sbx-inference";

// Records what the client does with it, in order.
class RecordingSink final : public InferenceSink {
 public:
  void head(int status, std::vector<HeaderField> headers) override {
    std::lock_guard lock(mu_);
    if (cancelled_) return;
    status_ = status;
    headers_ = std::move(headers);
    events_.push_back("head " + std::to_string(status));
    cv_.notify_all();
  }
  void chunk(std::string bytes) override {
    std::lock_guard lock(mu_);
    if (cancelled_) return;
    body_ += bytes;
    events_.push_back("chunk " + bytes);
    cv_.notify_all();
  }
  void end(std::string error) override {
    std::lock_guard lock(mu_);
    if (cancelled_) return;
    ended_ = true;
    error_ = std::move(error);
    events_.push_back("end " + error_);
    cv_.notify_all();
  }
  void on_cancel(std::function<void()> fn) override {
    std::unique_lock lock(mu_);
    if (cancelled_) {
      lock.unlock();
      fn();
      return;
    }
    on_cancel_ = std::move(fn);
  }
  bool cancelled() const override {
    std::lock_guard lock(mu_);
    return cancelled_;
  }
  // As the proxy does when the client leaves.
  void cancel() {
    std::function<void()> fn;
    {
      std::lock_guard lock(mu_);
      cancelled_ = true;
      fn = std::move(on_cancel_);
    }
    if (fn) fn();
  }
  bool wait_end(std::chrono::milliseconds timeout = 5000ms) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return ended_; });
  }
  bool wait_events(size_t n, std::chrono::milliseconds timeout = 5000ms) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return events_.size() >= n; });
  }
  std::vector<std::string> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  int status() const {
    std::lock_guard lock(mu_);
    return status_;
  }
  std::string body() const {
    std::lock_guard lock(mu_);
    return body_;
  }
  std::string error() const {
    std::lock_guard lock(mu_);
    return error_;
  }
  std::vector<HeaderField> headers() const {
    std::lock_guard lock(mu_);
    return headers_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
  std::vector<HeaderField> headers_;
  int status_ = 0;
  std::string body_, error_;
  bool ended_ = false, cancelled_ = false;
  std::function<void()> on_cancel_;
};

// The fake privacy-router: records each call and runs the test's script on it (on the NATS
// delivery thread), publishing frames on the call's reply subject.
class FakeRouter {
 public:
  using Script = std::function<void(const v1::InferenceCall&, FakeRouter&, const std::string& reply)>;
  FakeRouter(const std::string& url, Script script)
      : bus_(Bus::connect({url, "fake-router", 5s})), script_(std::move(script)) {
    sub_ = bus_->queue_subscribe(subjects::inference_call(kSandbox), subjects::kInferenceQueue, [this](Msg& m) {
      v1::InferenceCall call;
      REQUIRE(call.ParseFromArray(m.data().data(), static_cast<int>(m.data().size())));
      {
        std::lock_guard lock(mu_);
        calls_.push_back(call);
      }
      script_(call, *this, m.reply() ? m.reply() : "");
    });
    bus_->flush();
  }
  ~FakeRouter() { sub_ = Subscription(); }

  void frame(const std::string& reply, uint64_t seq, const std::function<void(v1::InferenceFrame&)>& fill) {
    v1::InferenceFrame f;
    f.set_seq(seq);
    fill(f);
    bus_->publish(reply, f);
  }
  void head(const std::string& reply, uint64_t seq, int status) {
    frame(reply, seq, [&](v1::InferenceFrame& f) {
      f.mutable_head()->set_status(status);
      auto* h = f.mutable_head()->add_headers();
      h->set_name("Content-Type");
      h->set_value("text/event-stream");
    });
  }
  void chunk(const std::string& reply, uint64_t seq, const std::string& bytes) {
    frame(reply, seq, [&](v1::InferenceFrame& f) { f.set_chunk(bytes); });
  }
  void end(const std::string& reply, uint64_t seq, const std::string& error = "") {
    frame(reply, seq, [&](v1::InferenceFrame& f) { f.mutable_end()->set_error(error); });
  }
  std::vector<v1::InferenceCall> calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }

 private:
  std::unique_ptr<Bus> bus_;
  Script script_;
  std::mutex mu_;
  std::vector<v1::InferenceCall> calls_;
  Subscription sub_;
};

InferenceRequest request(std::string path = "/v1/chat/completions") {
  InferenceRequest r;
  r.method = "POST";
  r.path = std::move(path);
  r.headers = {{"Content-Type", "application/json"}, {"Authorization", "Bearer placeholder"}};
  r.body = R"({"model":"m","stream":true})";
  r.binary = "/usr/bin/python3";
  r.pid = 42;
  return r;
}

InferenceClient::Options options(std::chrono::milliseconds first = 5000ms, std::chrono::milliseconds idle = 5000ms) {
  InferenceClient::Options o;
  o.sandbox_id = kSandbox;
  o.first_frame_timeout = first;
  o.idle_timeout = idle;
  return o;
}

std::unique_ptr<Bus> connect(const testing::NatsServer& s) { return Bus::connect({s.url(), "supervisor", 5s}); }

nlohmann::json error_of(const RecordingSink& s) { return nlohmann::json::parse(s.body())["error"]; }

}  // namespace

TEST_CASE("inference client: the call goes out whole; head, chunks and end come back in order") {
  testing::NatsServer nats;
  FakeRouter router(nats.url(), [](const v1::InferenceCall&, FakeRouter& r, const std::string& reply) {
    r.head(reply, 0, 200);
    r.chunk(reply, 1, "data: a\n\n");
    r.chunk(reply, 2, "data: b\n\n");
    r.end(reply, 3);
  });
  auto bus = connect(nats);
  InferenceClient client(*bus, options());
  CHECK(client.max_request_bytes() == 8 * 1024 * 1024 - InferenceClient::kEnvelopeBytes);
  auto sink = std::make_shared<RecordingSink>();
  client.handler()(request("/v1/chat/completions?x=1"), sink);
  REQUIRE(sink->wait_end());
  CHECK(sink->events() == std::vector<std::string>{"head 200", "chunk data: a\n\n", "chunk data: b\n\n", "end "});
  REQUIRE(sink->headers().size() == 1);
  CHECK(sink->headers()[0].name == "Content-Type");
  CHECK(sink->headers()[0].value == "text/event-stream");
  CHECK(client.active_calls() == 0);

  auto calls = router.calls();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].sandbox_id() == kSandbox);
  CHECK(calls[0].call_id().size() == 16);
  CHECK(calls[0].method() == "POST");
  CHECK(calls[0].path() == "/v1/chat/completions?x=1");
  CHECK(calls[0].body() == R"({"model":"m","stream":true})");
  CHECK(calls[0].binary() == "/usr/bin/python3");
  REQUIRE(calls[0].headers_size() == 2);
  CHECK(calls[0].headers(1).name() == "Authorization");

  // Calls are independent: two at once each get their own answer.
  auto a = std::make_shared<RecordingSink>(), b = std::make_shared<RecordingSink>();
  client.call(request(), a);
  client.call(request(), b);
  REQUIRE(a->wait_end());
  REQUIRE(b->wait_end());
  CHECK(a->body() == "data: a\n\ndata: b\n\n");
  CHECK(b->body() == "data: a\n\ndata: b\n\n");
  CHECK(router.calls().size() == 3);
  CHECK(router.calls()[1].call_id() != router.calls()[2].call_id());
}

TEST_CASE("inference client: a seq gap ends the response with \"lost frames\"; later frames are dropped") {
  testing::NatsServer nats;
  FakeRouter router(nats.url(), [](const v1::InferenceCall&, FakeRouter& r, const std::string& reply) {
    r.head(reply, 0, 200);
    r.chunk(reply, 1, "one");
    r.chunk(reply, 3, "three");  // 2 is lost
    r.end(reply, 4);
  });
  auto bus = connect(nats);
  InferenceClient client(*bus, options());
  auto sink = std::make_shared<RecordingSink>();
  client.call(request(), sink);
  REQUIRE(sink->wait_end());
  CHECK(sink->body() == "one");
  CHECK(sink->error().find("lost frames: expected frame 2, got frame 3") != std::string::npos);
  std::this_thread::sleep_for(100ms);
  CHECK(sink->events().size() == 3);  // head, chunk, end: nothing after
  CHECK(client.active_calls() == 0);
}

TEST_CASE("inference client: an error end from the router is passed on; so is a router error before the head") {
  testing::NatsServer nats;
  FakeRouter router(nats.url(), [](const v1::InferenceCall& c, FakeRouter& r, const std::string& reply) {
    if (c.path() == "/early") {
      r.end(reply, 0, "no backend for model m");
      return;
    }
    r.head(reply, 0, 200);
    r.chunk(reply, 1, "part");
    r.end(reply, 2, "the backend closed the stream");
  });
  auto bus = connect(nats);
  InferenceClient client(*bus, options());
  auto late = std::make_shared<RecordingSink>(), early = std::make_shared<RecordingSink>();
  client.call(request("/late"), late);
  client.call(request("/early"), early);
  REQUIRE(late->wait_end());
  REQUIRE(early->wait_end());
  CHECK(late->events() == std::vector<std::string>{"head 200", "chunk part", "end the backend closed the stream"});
  CHECK(early->events() == std::vector<std::string>{"end no backend for model m"});  // the proxy makes it a 502
}

TEST_CASE("inference client: no privacy-router subscribed answers 503 saying to start one") {
  testing::NatsServer nats;
  auto bus = connect(nats);
  InferenceClient client(*bus, options());
  auto sink = std::make_shared<RecordingSink>();
  client.call(request(), sink);
  REQUIRE(sink->wait_end());
  CHECK(sink->status() == 503);
  CHECK(sink->error().empty());
  auto err = error_of(*sink);
  CHECK(err["code"] == "unavailable");
  CHECK(err["message"].get<std::string>().find("no privacy-router is running; start bulwark-privacy-router") !=
        std::string::npos);
  CHECK(client.active_calls() == 0);
}

TEST_CASE("inference client: no first frame in time is a 504; silence after the head cuts the body") {
  testing::NatsServer nats;
  FakeRouter router(nats.url(), [](const v1::InferenceCall& c, FakeRouter& r, const std::string& reply) {
    if (c.path() == "/silent") return;  // never answers
    r.head(reply, 0, 200);
    r.chunk(reply, 1, "first");  // then nothing
  });
  auto bus = connect(nats);
  InferenceClient client(*bus, options(300ms, 400ms));
  auto silent = std::make_shared<RecordingSink>(), stalled = std::make_shared<RecordingSink>();
  auto started = std::chrono::steady_clock::now();
  client.call(request("/silent"), silent);
  client.call(request("/stalled"), stalled);
  REQUIRE(silent->wait_end());
  CHECK(std::chrono::steady_clock::now() - started >= 300ms);
  CHECK(silent->status() == 504);
  auto err = error_of(*silent);
  CHECK(err["code"] == "gateway_timeout");
  CHECK(err["message"].get<std::string>().find("did not answer within 300 ms") != std::string::npos);
  REQUIRE(stalled->wait_end());
  CHECK(stalled->events().size() == 3);
  CHECK(stalled->body() == "first");
  CHECK(stalled->error() == "no frame from the privacy-router for 400 ms");
  CHECK(client.active_calls() == 0);
}

TEST_CASE("inference client: a cancelled call is forgotten at once; its later frames go nowhere") {
  testing::NatsServer nats;
  std::atomic<bool> go{false}, started{false};
  std::thread streamer;
  FakeRouter router(nats.url(), [&](const v1::InferenceCall&, FakeRouter& r, const std::string& reply) {
    streamer = std::thread([&r, reply, &go] {
      while (!go) std::this_thread::sleep_for(5ms);
      for (uint64_t i = 1; i <= 5; ++i) r.chunk(reply, i, "late");
      r.end(reply, 6);
    });
    started = true;
    r.head(reply, 0, 200);
  });
  auto bus = connect(nats);
  InferenceClient client(*bus, options());
  auto sink = std::make_shared<RecordingSink>();
  client.call(request(), sink);
  REQUIRE(sink->wait_events(1));
  REQUIRE(started);
  CHECK(client.active_calls() == 1);
  sink->cancel();
  CHECK(client.active_calls() == 0);
  go = true;
  streamer.join();
  std::this_thread::sleep_for(100ms);
  CHECK(sink->events() == std::vector<std::string>{"head 200"});
}

TEST_CASE("inference client: stopping ends the calls in flight; its handler outlives it and answers 503") {
  testing::NatsServer nats;
  FakeRouter router(nats.url(), [](const v1::InferenceCall& c, FakeRouter& r, const std::string& reply) {
    if (c.path() == "/streaming") r.head(reply, 0, 200);  // and then nothing
  });
  auto bus = connect(nats);
  auto client = std::make_unique<InferenceClient>(*bus, options());
  auto waiting = std::make_shared<RecordingSink>(), streaming = std::make_shared<RecordingSink>();
  client->call(request("/waiting"), waiting);
  client->call(request("/streaming"), streaming);
  REQUIRE(streaming->wait_events(1));
  REQUIRE(testing::wait_until([&] { return router.calls().size() == 2; }, 5000ms));
  auto handler = client->handler();
  client.reset();
  CHECK(waiting->status() == 503);
  CHECK(streaming->error() == "the supervisor is stopping");
  auto after = std::make_shared<RecordingSink>();
  handler(request(), after);
  CHECK(after->status() == 503);
  CHECK(after->wait_end(0ms));
}

TEST_CASE("inference client: a client destroyed after its connection closed does not hang or crash") {
  testing::NatsServer nats;
  auto bus = connect(nats);
  auto client = std::make_unique<InferenceClient>(*bus, options());
  bus->drain();
  auto started = std::chrono::steady_clock::now();
  client.reset();
  CHECK(std::chrono::steady_clock::now() - started < 2s);
}
