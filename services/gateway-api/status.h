#pragma once
// GET /v1/status: the gateway's version and uptime, NATS, the drivers its heartbeat subscription
// has heard from, which services answer their health subject, and sandboxes by phase. Services are
// reached through HealthProbe, so this is tested without NATS.
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "bulwark/v1/common.pb.h"
#include "bulwark/v1/driver.pb.h"
#include "bulwark/v1/status.pb.h"
#include "services/gateway-api/store.h"

namespace bulwark::gateway {

using StatusClock = std::chrono::steady_clock;

// The last heartbeat of each driver, until 3 of its intervals pass without one (the scheduler's
// rule). Pure: time passed in; not thread-safe.
class DriverTable {
 public:
  void observe(const v1::DriverHeartbeat& hb, StatusClock::time_point now);
  // The live ones by driver_id; expired ones are dropped.
  std::vector<v1::DriverHeartbeat> live(StatusClock::time_point now);

 private:
  struct Entry {
    v1::DriverHeartbeat hb;
    StatusClock::time_point seen;
  };
  std::map<std::string, Entry> drivers_;
};

// Asks one service's bulwark.<service>.health. Throws Error: NoResponders when none runs,
// kTimeout when none answered in time.
class HealthProbe {
 public:
  virtual ~HealthProbe() = default;
  virtual v1::HealthReply health(const std::string& service, std::chrono::milliseconds timeout) = 0;
};

// The services /v1/status asks, in this order (docs/subjects.md, bulwark.<service>.health).
const std::vector<std::string>& status_services();

inline constexpr std::chrono::milliseconds kDefaultStatusTimeout{500};
inline constexpr std::chrono::milliseconds kMaxStatusTimeout{5000};

class StatusBoard {
 public:
  StatusBoard(Store& store, HealthProbe& probe, std::function<bool()> nats_connected, std::string instance_id);
  void on_heartbeat(const v1::DriverHeartbeat& hb);  // thread-safe (called on a NATS thread)
  // Asks every service at once; returns after at most about `timeout`.
  v1::StatusReply get(std::chrono::milliseconds timeout);

 private:
  Store& store_;
  HealthProbe& probe_;
  std::function<bool()> nats_connected_;
  std::string instance_id_;
  StatusClock::time_point started_;
  google::protobuf::Timestamp started_at_;
  std::mutex mu_;
  DriverTable drivers_;
};

}  // namespace bulwark::gateway
