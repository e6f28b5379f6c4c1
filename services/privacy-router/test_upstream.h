#pragma once
// Tests only: a cpp-httplib server on 127.0.0.1 standing in for a model backend.
#include <httplib.h>

#include <chrono>
#include <memory>
#include <thread>

namespace bulwark::privacy_router::testing {

class Upstream {
 public:
  explicit Upstream(std::unique_ptr<httplib::Server> srv = std::make_unique<httplib::Server>()) : srv_(std::move(srv)) {}
  ~Upstream() {
    srv_->stop();
    if (t_.joinable()) t_.join();
  }
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;
  httplib::Server& srv() { return *srv_; }
  // Binds a free port and serves on a thread; register the handlers before.
  int start() {
    port_ = srv_->bind_to_any_port("127.0.0.1");
    t_ = std::thread([this] { srv_->listen_after_bind(); });
    while (!srv_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return port_;
  }
  int port() const { return port_; }
  std::string url(const std::string& host = "127.0.0.1") const { return "http://" + host + ":" + std::to_string(port_); }

 private:
  std::unique_ptr<httplib::Server> srv_;
  std::thread t_;
  int port_ = 0;
};

}  // namespace bulwark::privacy_router::testing
