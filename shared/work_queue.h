#pragma once
// A fixed pool of worker threads for slow steps (a request that waits on another service) so that
// NATS delivery threads and HTTP handlers never block on them. Jobs start in FIFO order; on
// shutdown the jobs not yet started are dropped (their work is resumed from durable state).
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace bulwark {

class WorkQueue {
 public:
  explicit WorkQueue(size_t threads, std::string name = "work");
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;
  void post(std::function<void()> job);
  void shutdown();  // stop taking jobs, drop the queued ones, join

 private:
  void loop();
  std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace bulwark
