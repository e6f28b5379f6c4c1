// Live views of sandboxes over the real binaries (nats-server, podman, gateway-api, scheduler,
// driver-podman, the supervisor): the agent's own TTY (spec.tty) seen through its logs; logs
// `since` and `follow`; the events stream (SSE) of phase changes and denials; the CLI's
// `sandbox logs -f` and `events`; and a gateway that lets go of streams whose client went away.
// One suite for all, to keep the run short.
#include <doctest/doctest.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "shared/util.h"
#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// Reads a streaming GET on its own thread until the server ends it or stop() is called.
class StreamReader {
 public:
  StreamReader(const Suite& suite, const std::string& path) : cli_(suite.client()) {
    cli_.set_read_timeout(60);
    thread_ = std::thread([this, path] {
      auto r = cli_.Get(path, [this](const httplib::Response& res) {
        status_ = res.status;
        return true;
      }, [this](const char* d, size_t n) {
        std::lock_guard lock(mu_);
        body_.append(d, n);
        return !stop_;
      });
      ended_ = true;
    });
  }
  ~StreamReader() { stop(); }
  void stop() {
    stop_ = true;
    cli_.stop();  // closes the socket: the gateway must notice
    if (thread_.joinable()) thread_.join();
  }
  std::string body() {
    std::lock_guard lock(mu_);
    return body_;
  }
  bool ended() const { return ended_; }
  int status() const { return status_; }

 private:
  httplib::Client cli_;
  std::mutex mu_;
  std::string body_;
  std::atomic<bool> stop_{false}, ended_{false};
  std::atomic<int> status_{0};
  std::thread thread_;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t at = 0;
  for (size_t p; (p = s.find(sep, at)) != std::string::npos; at = p + 1) out.push_back(s.substr(at, p - at));
  out.push_back(s.substr(at));
  return out;
}

// The SSE events in a body: (event, data).
std::vector<std::pair<std::string, json>> sse_events(const std::string& body) {
  std::vector<std::pair<std::string, json>> out;
  size_t at = 0;
  for (size_t end; (end = body.find("\n\n", at)) != std::string::npos; at = end + 2) {
    std::string block = body.substr(at, end - at), event;
    json data;
    for (size_t p = 0; p < block.size();) {
      size_t nl = block.find('\n', p);
      std::string line = block.substr(p, nl == std::string::npos ? std::string::npos : nl - p);
      if (line.rfind("event: ", 0) == 0) event = line.substr(7);
      if (line.rfind("data: ", 0) == 0) data = json::parse(line.substr(6));
      p = nl == std::string::npos ? block.size() : nl + 1;
    }
    if (!event.empty()) out.emplace_back(event, data);
  }
  return out;
}

bool has_phase(const std::vector<std::pair<std::string, json>>& ev, const std::string& id, const std::string& phase) {
  for (const auto& [e, d] : ev)
    if (e == "phase" && d.value("sandbox_id", "") == id && d.value("phase", "") == phase) return true;
  return false;
}

double metric(const Suite& suite, const std::string& name) {
  httplib::Client c("127.0.0.1", suite.metrics_port("gateway-api"));
  auto r = c.Get("/metrics");
  if (!r) return -1;
  size_t at = r->body.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(r->body.substr(at + name.size() + 2));
}

struct Run {
  int code;
  std::string out, err;
};
Run run_cli(const std::vector<std::string>& args, const Suite& suite, std::chrono::seconds limit = 30s) {
  std::vector<std::string> argv = {bin("bulwark"), "--gateway", suite.gateway_url(), "--token", suite.admin_token()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto p = Process::spawn({.argv = argv, .pipe_stdout = true, .pipe_stderr = true});
  Run r{-1, {}, {}};
  pollfd fds[2] = {{p.stdout_fd(), POLLIN, 0}, {p.stderr_fd(), POLLIN, 0}};
  std::string* into[2] = {&r.out, &r.err};
  char buf[4096];
  auto end = std::chrono::steady_clock::now() + limit;
  for (int live = 2; live > 0 && std::chrono::steady_clock::now() < end;) {
    if (::poll(fds, 2, 200) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) into[i]->append(buf, static_cast<size_t>(n));
      else fds[i].fd = -1, --live;
    }
  }
  r.code = p.wait_for(2s).value_or(-1);  // -1: it did not end by itself (killed by the destructor)
  return r;
}

}  // namespace

TEST_CASE("tty, logs since/follow, events and their CLI over the real suite") {
  Suite suite(SuiteOptions{.metrics = true});
  StreamReader events(suite, "/v1/events");
  REQUIRE(wait_until([&] { return events.body().find(": watching") != std::string::npos; }, 10s));
  CHECK(events.status() == 200);

  // The agent on its own pseudo-terminal; then a pause so that a follow started now sees lines
  // arrive live.
  auto s = suite.create({{"tty", true},
                         {"command",
                          {"sh", "-c",
                           "test -t 0 && test -t 1 && test -t 2 && echo tty-yes; stty size; "
                           "sleep 2; echo late-line; sleep 1"}}});
  std::string id = s["sandbox_id"];
  StreamReader follow(suite, "/v1/sandboxes/" + id + "/logs?follow=true&stream=stdout");
  s = suite.wait_phase(id, {"EXITED", "FAILED"}, 60s);
  REQUIRE_MESSAGE(s["phase"] == "EXITED", s.dump(2));

  // The follow ends by itself once the sandbox ended and its last lines came.
  CHECK_MESSAGE(wait_until([&] { return follow.ended(); }, 15s), "the follow did not end: " << follow.body());
  CHECK(follow.status() == 200);
  std::vector<std::string> followed;
  for (const auto& line : split(follow.body(), '\n'))
    if (!line.empty()) followed.push_back(json::parse(line).value("line", ""));
  CHECK_MESSAGE(followed.size() >= 3, follow.body());
  CHECK(std::find(followed.begin(), followed.end(), "tty-yes") != followed.end());
  CHECK(std::find(followed.begin(), followed.end(), "24 80") != followed.end());
  CHECK(std::find(followed.begin(), followed.end(), "late-line") != followed.end());
  CHECK(std::count(followed.begin(), followed.end(), "tty-yes") == 1);  // the backlog and the live part overlap once

  // The stored log: a tty's lines without their '\r'.
  auto r = suite.client().Get("/v1/sandboxes/" + id + "/logs?stream=stdout");
  REQUIRE(r);
  auto lines = json::parse(r->body)["lines"];
  std::vector<std::string> text;
  for (const auto& l : lines) text.push_back(l.value("line", ""));
  CHECK_MESSAGE(std::find(text.begin(), text.end(), "tty-yes") != text.end(), r->body);
  CHECK_MESSAGE(std::find(text.begin(), text.end(), "24 80") != text.end(), r->body);

  // since: a duration, an RFC 3339 time (in the future: nothing), and bad values naming the field.
  r = suite.client().Get("/v1/sandboxes/" + id + "/logs?stream=stdout&since=1h");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(json::parse(r->body)["lines"].size() == lines.size());
  r = suite.client().Get("/v1/sandboxes/" + id + "/logs?since=2999-01-01T00:00:00Z");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(json::parse(r->body).value("lines", json::array()).empty());
  for (const char* bad : {"yesterday", "5", "2026-13-01T00:00:00Z"}) {
    r = suite.client().Get("/v1/sandboxes/" + id + "/logs?since=" + bad);
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(json::parse(r->body)["error"]["field"] == "since");
  }
  r = suite.client().Get("/v1/sandboxes/" + id + "/logs?follow=maybe");
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(json::parse(r->body)["error"]["field"] == "follow");
  r = suite.client().Get("/v1/sandboxes/nope/logs?follow=true");
  REQUIRE(r);
  CHECK(r->status == 404);

  // A second sandbox asks for a host no policy allows: its egress proxy refuses (a denial).
  auto denied = suite.create({{"command", {"sh", "-c", "wget -q -O /dev/null http://blocked.example/; echo agent-up; sleep 3"}}});
  std::string denied_id = denied["sandbox_id"];

  // The events stream saw the lifecycle and the denial, each with sandbox_id and at.
  CHECK_MESSAGE(wait_until([&] {
                  auto ev = sse_events(events.body());
                  return has_phase(ev, id, "READY") && has_phase(ev, id, "EXITED") &&
                         std::any_of(ev.begin(), ev.end(), [&](const auto& e) {
                           return e.first == "denial" && e.second.value("sandbox_id", "") == denied_id &&
                                  e.second.dump().find("blocked.example") != std::string::npos;
                         });
                }, 30s),
                "events: " << events.body() << "\nlogs: " << suite.client().Get("/v1/sandboxes/" + denied_id + "/logs")->body);
  auto ev = sse_events(events.body());
  CHECK(has_phase(ev, id, "PENDING"));
  for (const auto& [e, d] : ev) {
    CHECK(d.contains("at"));
    CHECK((d.value("sandbox_id", "") == id || d.value("sandbox_id", "") == denied_id));
  }

  // CLI: logs -f of an ended sandbox prints its lines and returns; events of one sandbox ends
  // once it is deleted.
  auto lf = run_cli({"sandbox", "logs", id, "--since", "10m", "-f"}, suite);
  CHECK_MESSAGE(lf.code == 0, lf.err);
  CHECK(lf.out.find("tty-yes\n") != std::string::npos);
  CHECK(lf.out.find("late-line\n") != std::string::npos);
  auto bad = run_cli({"logs", id, "--since", "soon"}, suite);
  CHECK(bad.code != 0);
  CHECK(bad.err.find("since") != std::string::npos);

  std::thread deleter([&] {
    std::this_thread::sleep_for(1500ms);  // the CLI is subscribed by then
    suite.client().Delete("/v1/sandboxes/" + id);
  });
  auto we = run_cli({"sandbox", "events", id}, suite, 30s);
  deleter.join();
  CHECK_MESSAGE(we.code == 0, we.err);
  CHECK_MESSAGE(we.out.find(id + "  phase DELETED") != std::string::npos, we.out);

  // Per owner: a ci token is told another owner's sandbox does not exist, and its own stream of
  // every sandbox carries none of the admin's events.
  auto tok = suite.client().Post("/v1/tokens", json{{"name", "watcher"}, {"scope", "ci"}}.dump(), "application/json");
  REQUIRE(tok);
  REQUIRE_MESSAGE(tok->status == 201, tok->body);
  httplib::Client ci("127.0.0.1", std::stoi(suite.gateway_url().substr(suite.gateway_url().rfind(':') + 1)));
  ci.set_bearer_token_auth(json::parse(tok->body)["token"].get<std::string>().c_str());
  ci.set_read_timeout(5);
  auto other = ci.Get("/v1/sandboxes/" + denied_id + "/events");
  REQUIRE(other);
  CHECK(other->status == 404);
  other = ci.Get("/v1/events?sandbox_id=" + denied_id);
  REQUIRE(other);
  CHECK(other->status == 404);
  std::string ci_body;
  bool deleted = false;
  ci.Get("/v1/events", [&](const char* d, size_t n) {
    ci_body.append(d, n);
    if (!std::exchange(deleted, true)) suite.client().Delete("/v1/sandboxes/" + denied_id);  // events it must not see
    return ci_body.size() < 4096;
  });  // ends at the read timeout
  CHECK(deleted);
  CHECK_MESSAGE(ci_body.rfind(": watching", 0) == 0, ci_body);
  CHECK_MESSAGE(ci_body.find("event:") == std::string::npos, ci_body);
  CHECK(wait_until([&] { return has_phase(sse_events(events.body()), denied_id, "DELETED"); }, 10s));

  // A client that goes away: the gateway lets go of its stream (and the thread serving it).
  CHECK(wait_until([&] { return metric(suite, "bulwark_gateway_open_streams") == 1; }, 10s));  // `events`, still open
  {
    std::vector<std::unique_ptr<StreamReader>> quitters;
    for (int i = 0; i < 4; ++i) quitters.push_back(std::make_unique<StreamReader>(suite, "/v1/events"));
    CHECK(wait_until([&] { return metric(suite, "bulwark_gateway_open_streams") == 5; }, 10s));
  }
  events.stop();
  CHECK_MESSAGE(wait_until([&] { return metric(suite, "bulwark_gateway_open_streams") == 0; }, 10s),
                "open streams: " << metric(suite, "bulwark_gateway_open_streams"));
}
