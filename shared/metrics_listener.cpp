#include "shared/metrics_listener.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "shared/error.h"
#include "shared/metrics.h"

namespace bulwark {

struct MetricsListener::Impl {
  httplib::Server srv_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

MetricsListener::MetricsListener(const std::string& listen, std::function<std::string()> not_ready)
    : impl_(std::make_unique<Impl>()) {
  auto& srv = impl_->srv_;
  auto [host, port] = metrics::parse_listen(listen);
  srv.set_tcp_nodelay(true);
  // Scrapes are rare and cheap: two threads, not httplib's default of at least eight. httplib
  // owns (and deletes) the queue it gets from this factory.
  srv.new_task_queue = [] { return new httplib::ThreadPool(2); };
  srv.Get("/metrics", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics::registry().render(), metrics::kContentType);
  });
  srv.Get("/readyz", [not_ready = std::move(not_ready)](const httplib::Request&, httplib::Response& res) {
    std::string why = not_ready();
    if (why.empty()) {
      res.set_content("ready\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content("not ready\n" + why, "text/plain");
    }
  });
  srv.Get("/livez", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  if (!srv.bind_to_port(host, port))
    throw Error(Code::kUnavailable,
                "cannot listen on " + listen + " for metrics (in use? set --metrics-listen or BULWARK_METRICS_LISTEN)",
                "metrics-listen");
  impl_->thread_ = std::thread([impl = impl_.get()] {
    impl->srv_.listen_after_bind();
    impl->done_ = true;
  });
  spdlog::info("metrics on http://{}/metrics (also /readyz, /livez)", listen);
}

MetricsListener::~MetricsListener() {
  // stop() does nothing until listen_after_bind has begun: wait for that (or for its end).
  while (!impl_->srv_.is_running() && !impl_->done_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  impl_->srv_.stop();
  impl_->thread_.join();
}

}  // namespace bulwark
