#include "services/privacy-router/router.h"

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include <map>

#include "bulwark/v1/sandbox.pb.h"
#include "shared/metrics.h"
#include "shared/subjects.h"
#include "shared/util.h"

namespace bulwark::privacy_router {
namespace {

using Clock = std::chrono::steady_clock;

// Audit events waiting for JetStream beyond this are dropped (and logged): memory stays bounded
// while the stream is missing or slow.
constexpr int kMaxPendingEvents = 10000;
// After an event could not be stored (js_publish retries for up to 2 s), later ones are not tried
// for this long, so a missing stream costs a log line, not a growing queue.
constexpr auto kEventPause = std::chrono::seconds(5);

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// The last event of a text/event-stream cut for idleness, so that an SDK reading events sees why.
std::string sse_timeout_event(const std::string& message) {
  nlohmann::ordered_json j = {{"type", "error"}, {"error", {{"type", "timeout"}, {"message", message}}}};
  return "event: error\ndata: " + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

std::string join(const google::protobuf::RepeatedPtrField<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : "; ") + s;
  return out;
}

// Decrements the in-flight count when the call's job ends or is dropped unstarted.
struct Slot {
  explicit Slot(std::atomic<int>& n) : n_(n) {}
  ~Slot() { n_.fetch_sub(1); }
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  std::atomic<int>& n_;
};

// Prometheus (docs/observability.md), from the call's audit event: provider is the backend that
// answered ("none" when no backend did), status the HTTP status the caller got.
void count_call(const v1::InferenceEvent& ev) {
  static auto& calls = metrics::registry().counter("bulwark_inference_calls_total",
                                                   "Inference calls answered, by provider and HTTP status.", {"provider", "status"});
  static auto& seconds = metrics::registry().histogram(
      "bulwark_inference_call_duration_seconds", "Time from receiving an inference call to its last byte relayed, by provider.",
      {"provider"}, {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300});
  static auto& request_bytes = metrics::registry().counter("bulwark_inference_request_bytes_total",
                                                           "Request body bytes of inference calls, by provider.", {"provider"});
  static auto& response_bytes = metrics::registry().counter(
      "bulwark_inference_response_bytes_total", "Response body bytes relayed to callers, by provider.", {"provider"});
  const std::string provider = ev.provider().empty() ? "none" : ev.provider();
  calls.with({provider, std::to_string(ev.status())}).inc();
  seconds.with({provider}).observe(ev.latency_ms() / 1000);
  request_bytes.with({provider}).inc(static_cast<double>(ev.request_bytes()));
  response_bytes.with({provider}).inc(static_cast<double>(ev.response_bytes()));
}

}  // namespace

// ---- FrameWriter ----

bool FrameWriter::send(v1::InferenceFrame& f) {
  if (broken_) return false;
  f.set_seq(seq_++);
  try {
    sink_(f);
  } catch (const std::exception& e) {
    broken_ = true;
    spdlog::warn("cannot publish an inference frame: {}", e.what());
    return false;
  }
  return true;
}

bool FrameWriter::head(int status, const Headers& headers) {
  if (head_sent_ || ended_) return false;
  v1::InferenceFrame f;
  auto* h = f.mutable_head();
  h->set_status(status);
  for (const auto& [k, v] : headers) {
    auto* hh = h->add_headers();
    hh->set_name(k);
    hh->set_value(v);
  }
  head_sent_ = true;
  head_at_ = std::chrono::steady_clock::now();
  return send(f);
}

bool FrameWriter::chunk(std::string_view data) {
  for (size_t off = 0; off < data.size(); off += kMaxFrameBytes) {
    v1::InferenceFrame f;
    std::string_view piece = data.substr(off, kMaxFrameBytes);
    f.set_chunk(piece.data(), piece.size());
    if (!send(f)) return false;
    body_bytes_ += piece.size();
  }
  return !broken_;
}

bool FrameWriter::end(const std::string& error) {
  if (ended_) return !broken_;
  ended_ = true;
  v1::InferenceFrame f;
  f.mutable_end()->set_error(error);
  return send(f);
}

void answer_error(FrameWriter& w, ApiStyle style, const CallError& e) {
  w.head(e.status, {{"content-type", "application/json"}});
  w.chunk(error_body(style, e));
  w.end("");  // a complete response, not a cut one
}

std::string event_line(const v1::InferenceEvent& ev) {
  std::string s = "inference " + ev.method() + " " + ev.path();
  if (!ev.model().empty()) s += " model=" + ev.model();
  s += " -> ";
  if (!ev.provider().empty()) s += ev.provider() + " (" + ev.backend_model() + ") ";
  s += std::to_string(ev.status()) + " " + std::to_string(ev.response_bytes()) + " B in " +
       fmt::format("{:.1f}", ev.latency_ms()) + " ms";
  if (!ev.provider().empty() && ev.attempts_size() > 0)
    s += " after " + std::to_string(ev.attempts_size()) + " other backend" + (ev.attempts_size() == 1 ? "" : "s");
  if (!ev.error().empty()) s += ": " + ev.error();
  return s;
}

// ---- Router ----

struct Router::Call {
  std::string sandbox_id;  // the subject's token: what NATS permissions vouch for
  std::string reply;
  Clock::time_point received;
  v1::InferenceCall call;
  Endpoint ep;
  Body body;
  Selection sel;
  std::string backend_model;
  bool tried = false;  // some backend was contacted (or refused by the local-only check)
  v1::InferenceEvent ev;
};

Router::Router(Bus& bus, RouterOptions o)
    : bus_(bus),
      o_(std::move(o)),
      providers_(
          [this](const std::string& name) {
            v1::ProviderResolveRequest req;
            req.set_name(name);
            try {
              return bus_.request<v1::Provider>(subjects::kProviderResolve, req, o_.resolve_timeout);
            } catch (const NoResponders&) {
              throw Error(Code::kUnavailable, "cannot resolve provider " + name + ": gateway-api is not answering on " +
                                                  subjects::kProviderResolve + " (is it running?)");
            } catch (const Error& e) {
              throw Error(e.code(), "cannot resolve provider " + name + ": " + e.what(), e.field());
            }
          },
          o_.provider_ttl),
      forwarder_(o_.forward),
      routes_(bus.key_value({.bucket = subjects::kInferenceRoutesBucket,
                             .description = "inference route tables: key global and sandbox.<sandbox_id>"})),
      table_(std::make_shared<RouteTable>()),
      events_(2, "inference-events"),
      calls_(static_cast<size_t>(o_.max_concurrent), "inference-calls") {
  // Have the current tables before the first call, so a fresh router does not answer "no route".
  watch_.emplace(routes_.watch(">"));
  auto t = std::make_shared<RouteTable>();
  auto deadline = Clock::now() + o_.initial_routes_wait;
  while (!watch_->caught_up() && Clock::now() < deadline)
    if (auto e = watch_->next(std::chrono::milliseconds(100))) apply(*t, *e);
  if (!watch_->caught_up())
    spdlog::warn("KV {} did not deliver every route table within {} ms; serving with what came so far",
                 subjects::kInferenceRoutesBucket, o_.initial_routes_wait.count());
  table_ = t;

  changed_ = bus.subscribe(subjects::kProviderChanged, [this](Msg& m) {
    v1::ProviderResolveRequest r;
    if (!r.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) r.clear_name();  // unknown: drop all
    providers_.invalidate(r.name());
    spdlog::debug("provider {} changed: cache entry dropped", r.name().empty() ? "(all)" : r.name());
  });
  calls_sub_ = bus.queue_subscribe(subjects::kInferenceCallAll, subjects::kInferenceQueue, [this](Msg& m) { on_call(m); });
  bus.flush();
  watcher_ = std::thread([this] { watch_routes(); });  // last: nothing after it may throw
}

Router::~Router() { stop(); }

void Router::stop() {
  if (stopping_.exchange(true)) return;
  if (watcher_.joinable()) watcher_.join();
  watch_.reset();  // its consumer would hold up the bus drain that follows until it times out
  // New calls are refused (503) from now on; those in flight may finish within the grace period.
  auto deadline = Clock::now() + o_.shutdown_grace;
  while (in_flight_.load() > 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (int n = in_flight_.load(); n > 0)
    spdlog::warn("cutting {} inference calls still running after {} ms", n, o_.shutdown_grace.count());
  forwarder_.abort_all();
}

std::shared_ptr<const RouteTable> Router::table() const {
  std::lock_guard lock(table_mu_);
  return table_;
}

void Router::apply(RouteTable& t, const KvEntry& e) const {
  if (e.deleted) {
    if (t.remove(e.key)) spdlog::info("inference routes of {} removed", e.key);
    return;
  }
  v1::InferenceConfig cfg;
  if (!cfg.ParseFromString(e.value)) {
    // Keeping the previous table is safer than dropping it: a sandbox's local-only must not lapse.
    spdlog::error("KV {} key {} is not a valid InferenceConfig; keeping its previous routes",
                  subjects::kInferenceRoutesBucket, e.key);
    return;
  }
  if (t.put(e.key, cfg))
    spdlog::info("inference routes of {}: {} route(s), privacy {}", e.key, cfg.routes_size(),
                 cfg.privacy().empty() ? "any" : cfg.privacy());
  else
    spdlog::warn("ignoring KV {} key {}: expected global or sandbox.<sandbox_id>", subjects::kInferenceRoutesBucket, e.key);
}

void Router::watch_routes() {
  bool rebuild = false;  // after a failed watch: replay every table into a fresh one
  while (!stopping_) {
    try {
      if (!watch_) {
        watch_.emplace(routes_.watch(">"));
        rebuild = true;
      }
      if (rebuild) {
        auto t = std::make_shared<RouteTable>();
        auto deadline = Clock::now() + o_.initial_routes_wait;
        while (!watch_->caught_up() && Clock::now() < deadline && !stopping_)
          if (auto e = watch_->next(std::chrono::milliseconds(100))) apply(*t, *e);
        std::lock_guard lock(table_mu_);
        table_ = t;
        rebuild = false;
        continue;
      }
      auto e = watch_->next(std::chrono::milliseconds(250));
      if (!e) continue;
      auto t = std::make_shared<RouteTable>(*table());  // copy on write: calls keep the snapshot they took
      apply(*t, *e);
      std::lock_guard lock(table_mu_);
      table_ = t;
    } catch (const std::exception& ex) {
      spdlog::warn("watching KV {} failed: {}; watching again in 1 s", subjects::kInferenceRoutesBucket, ex.what());
      watch_.reset();
      for (int i = 0; i < 20 && !stopping_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

void Router::on_call(Msg& m) {
  auto c = std::make_shared<Call>();
  c->received = Clock::now();
  const std::string subject(m.subject());
  const char* reply = m.reply();
  if (!reply || !*reply) {
    spdlog::warn("inference call on {} has no reply subject: nobody to answer, dropped", subject);
    return;
  }
  c->reply = reply;
  c->sandbox_id = subject.substr(subject.rfind('.') + 1);
  const bool parsed = c->call.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()));
  c->ep = classify(c->call.method(), c->call.path());
  c->ev.set_call_id(c->call.call_id());
  c->ev.set_method(c->call.method());
  c->ev.set_path(c->ep.path);  // never the query: it may carry a key
  c->ev.set_binary(c->call.binary());
  c->ev.set_request_bytes(c->call.body().size());

  auto refuse = [&](const CallError& e) {
    FrameWriter w([this, reply = c->reply](const v1::InferenceFrame& f) { bus_.publish(reply, f); });
    answer_error(w, c->ep.style, e);
    c->ev.set_status(e.status);
    c->ev.set_error(e.message);
    finish(*c, w);
  };
  if (!parsed) return refuse({400, "the inference call on " + subject + " is not a valid bulwark.v1.InferenceCall"});
  if (c->call.sandbox_id() != c->sandbox_id)
    return refuse({400, "the call names sandbox '" + c->call.sandbox_id() + "' but came on " + subject +
                            ": a supervisor may call only for its own sandbox", "sandbox_id"});
  if (stopping_) return refuse({503, "the privacy router is shutting down; retry the call", "", "", true});
  if (in_flight_.fetch_add(1) >= o_.max_concurrent) {
    in_flight_.fetch_sub(1);
    return refuse({503,
                   "the privacy router is already handling its limit of " + std::to_string(o_.max_concurrent) +
                       " calls (--max-concurrent); retry shortly or run another privacy-router",
                   "", "overloaded", true});
  }
  auto slot = std::make_shared<Slot>(in_flight_);
  calls_.post([this, c, slot] { process(*c); });
}

void Router::process(Call& c) {
  FrameWriter w([this, reply = c.reply](const v1::InferenceFrame& f) { bus_.publish(reply, f); });
  auto fail = [&](const CallError& e) {
    if (!w.head_sent())
      answer_error(w, c.ep.style, e);
    else
      w.end(e.message);
    c.ev.set_status(e.status);
    c.ev.set_error(e.message);
  };
  try {
    route_and_forward(c, w);
  } catch (const CallError& e) {
    fail(e);
  } catch (const std::exception& e) {
    spdlog::error("inference call {} failed: {}", c.call.call_id(), e.what());
    fail({500, std::string("the privacy router failed: ") + e.what()});
  }
  finish(c, w);
}

void Router::route_and_forward(Call& c, FrameWriter& w) {
  const auto& call = c.call;
  if (!is_safe_target(call.path()))
    throw CallError{400, "the request target must be a path starting with '/' without spaces or control characters"};
  if (!c.ep.known())
    throw CallError{404,
                    call.method() + " " + c.ep.path + " is not served by inference.local; it serves " +
                        supported_endpoints(),
                    "", "unknown_url"};
  c.ev.set_api(style_name(c.ep.style));
  if (call.body().size() > o_.max_request_bytes)
    throw CallError{413,
                    "the request body is " + std::to_string(call.body().size()) +
                        " bytes, more than the privacy router's limit of " + std::to_string(o_.max_request_bytes) +
                        " bytes (--max-request-bytes)",
                    "", "request_too_large"};
  auto table = this->table();
  if (c.ep.op == Op::kModels) {
    w.head(200, {{"content-type", "application/json"}});
    w.chunk(models_body(table->models(c.sandbox_id)));
    w.end("");
    c.ev.set_status(200);
    return;
  }
  c.body = parse_body(call.body());
  c.ev.set_model(c.body.model);
  c.sel = table->select(c.sandbox_id, c.body.model);
  if (!c.sel.matched)
    throw CallError{400,
                    "no inference route matches model '" + c.body.model +
                        "'; set one with `bulwark inference set --provider NAME --model MODEL`",
                    "model", "model_not_found"};
  c.ev.set_route(c.sel.route_label());
  for (const auto& s : c.sel.skipped) c.ev.add_attempts(s);

  for (const auto& b : c.sel.candidates) {
    auto up = prepare(c, b);
    if (!up) continue;
    c.tried = true;
    bool streamed = false;
    auto on_head = [&](int status, const Headers& h) {
      const std::string* ct = find_header(h, "content-type");
      streamed = ct && lower(*ct).rfind("text/event-stream", 0) == 0;
      c.ev.set_status(status);
      c.ev.set_provider(b.provider());
      return w.head(status, relay_response_headers(h));
    };
    auto on_chunk = [&](std::string_view d) { return w.chunk(d); };
    ForwardResult r = forwarder_.forward(*up, on_head, on_chunk);
    if (r.outcome == ForwardResult::Outcome::kFailed) {
      c.ev.add_attempts(b.provider() + ": " + r.error);
      spdlog::info("inference call {}: backend {} failed: {}", call.call_id(), b.provider(), r.error);
      continue;
    }
    c.ev.set_streamed(streamed);
    if (r.outcome == ForwardResult::Outcome::kCut) {
      if (r.idle_timeout && streamed) w.chunk(sse_timeout_event(r.error));
      w.end(r.error);
      c.ev.set_error(r.error);
    } else {
      w.end("");
    }
    return;
  }
  const std::string why = join(c.ev.attempts());
  const std::string route = "route '" + c.sel.match + "' (" + c.sel.scope + ")";
  if (!c.tried)
    throw CallError{503, route + " has no usable backend for model '" + c.body.model + "': " + why};
  throw CallError{502, "every backend of " + route + " failed for model '" + c.body.model + "': " + why};
}

std::optional<UpstreamRequest> Router::prepare(Call& c, const v1::InferenceBackend& b) {
  const std::string& name = b.provider();
  auto unusable = [&](const std::string& why) -> std::optional<UpstreamRequest> {
    c.ev.add_attempts(name + ": " + why);
    return std::nullopt;
  };
  v1::Provider p;
  try {
    p = providers_.get(name);
  } catch (const Error& e) {
    return unusable(e.what());
  }
  const providers::Profile* prof = providers::find(p.type());
  if (auto why = backend_unusable(name, p.type(), prof, c.ep.style); !why.empty()) return unusable(why);
  const std::string base = p.base_url().empty() ? prof->default_base_url : p.base_url();
  if (base.empty())
    return unusable("provider " + name + " has no base_url and type " + p.type() + " has no default: give it its server's URL");
  UpstreamRequest up;
  try {
    up.url = parse_base_url(base);
  } catch (const Error& e) {
    return unusable("provider " + name + ": " + e.what());
  }
  const std::map<std::string, std::string> creds(p.credentials().begin(), p.credentials().end());
  const auto key = providers::backend_key(*prof, creds);
  if (!key && prof->type != "generic")
    return unusable("provider " + name + " has no credential (type " + p.type() + " expects " +
                (prof->env_vars.empty() ? std::string("API_KEY") : prof->env_vars.front()) + ")");
  if (b.privacy() == kLocalOnly) {
    // Checked now and connected to by address, so that DNS cannot point elsewhere in between.
    c.tried = true;  // a refusal here counts as this backend failing
    try {
      up.connect_ips = resolve_host(up.url.host);
    } catch (const Error& e) {
      return unusable(e.what());
    }
    if (auto v = local_only_violation(name, up.connect_ips); !v.empty()) return unusable(v);
  }
  up.method = c.call.method();
  up.target = upstream_target(up.url.prefix, c.ep.path + c.ep.query);
  Headers in;
  for (const auto& h : c.call.headers()) in.emplace_back(h.name(), h.value());
  up.headers = strip_request_headers(in);
  inject_credential(up.headers, *prof, key);
  if (c.ep.has_body() && !find_header(up.headers, "content-type"))
    up.headers.emplace_back("content-type", "application/json");
  up.body = rewrite_model(c.body, c.call.body(), b.model());
  up.secret = key.value_or("");
  c.backend_model = b.model().empty() ? c.body.model : b.model();
  c.ev.set_backend_model(c.backend_model);
  return up;
}

void Router::finish(Call& c, const FrameWriter& w) {
  const auto now = Clock::now();
  c.ev.set_latency_ms(ms_between(c.received, now));
  if (w.head_sent()) c.ev.set_first_byte_ms(ms_between(c.received, w.head_at()));
  c.ev.set_response_bytes(w.body_bytes());
  if (c.ev.provider().empty()) c.ev.clear_backend_model();
  count_call(c.ev);
  publish_event(c.sandbox_id, std::move(c.ev));
}

void Router::publish_event(const std::string& sandbox_id, v1::InferenceEvent ev) {
  v1::LogLine line;
  line.set_sandbox_id(sandbox_id);
  line.set_stream("inference");
  *line.mutable_at() = now_timestamp();
  line.set_line(event_line(ev));
  *line.mutable_inference() = std::move(ev);
  spdlog::info("sandbox {} call {}: {}", sandbox_id, line.inference().call_id(), line.line());
  if (!is_subject_token(sandbox_id)) return;  // no logs subject to publish on
  auto drop = [&](const char* why) {
    // Counted, and logged now and then: a missing stream must not flood the log.
    if (events_dropped_.fetch_add(1) % 1000 == 0)
      spdlog::warn("audit events are not stored ({}); {} dropped so far, each still in this log",
                   why, events_dropped_.load());
  };
  if (Clock::now().time_since_epoch().count() < events_paused_until_.load()) return drop("JetStream failed recently");
  if (events_pending_.fetch_add(1) >= kMaxPendingEvents) {
    events_pending_.fetch_sub(1);
    return drop("too many wait for JetStream");
  }
  events_.post([this, line = std::move(line)] {
    events_pending_.fetch_sub(1);
    if (Clock::now().time_since_epoch().count() < events_paused_until_.load()) {
      events_dropped_.fetch_add(1);
      return;
    }
    try {
      bus_.js_publish(subjects::sandbox_logs(line.sandbox_id()), line, std::chrono::milliseconds(2000));
    } catch (const std::exception& e) {
      // Stream BULWARK_SANDBOX is the gateway's; without it the event is only in our log.
      events_paused_until_ = (Clock::now() + kEventPause).time_since_epoch().count();
      spdlog::debug("audit event of call {} not stored: {}", line.inference().call_id(), e.what());
    }
  });
}

}  // namespace bulwark::privacy_router
