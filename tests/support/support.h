#pragma once
// Helpers for tests that run real parts: temporary directories, free ports, a real nats-server
// with JetStream, and polling with a deadline.
#include <chrono>
#include <functional>
#include <string>

#include "shared/process.h"

#include "shared/util.h"

namespace bulwark::testing {

using bulwark::TempDir;  // shared/util.h

// A free loopback port whose next port is free too (gateway-api listens on HTTP port + 1 for connect).
int free_port();
// Polls pred every 20 ms until it holds or timeout passes. Returns whether it held.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);
bool port_open(int port);
std::string read_file(const std::string& path);

// Fails the test (throws) with what to install when a binary the test needs is missing.
void require_binary(const std::string& name, const std::string& package);

class NatsServer {
 public:
  // Starts nats-server -js on a free loopback port with its store in a temp dir; extra_conf is
  // appended to its config file (e.g. operator mode and TLS).
  explicit NatsServer(std::string extra_conf = "");
  const std::string& url() const { return url_; }
  int port() const { return port_; }
  void stop() { proc_.stop(); }
  std::string log() const;  // what nats-server wrote so far (e.g. its permission violations)
  void restart();

 private:
  void start();
  TempDir dir_;
  std::string extra_conf_;
  int port_;
  std::string url_;
  Process proc_;
};

}  // namespace bulwark::testing
