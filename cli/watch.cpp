#include "cli/watch.h"

#include <csignal>
#include <cstdio>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

namespace bulwark::cli {

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}
}  // namespace

std::string changed_lines(const std::string& before, const std::string& now) {
  auto old_lines = lines_of(before);
  std::multiset<std::string> seen(old_lines.begin(), old_lines.end());
  std::string out;
  auto cur = lines_of(now);
  for (size_t i = 0; i < cur.size(); ++i) {
    if (i == 0 && !before.empty()) continue;  // the header, once
    auto it = seen.find(cur[i]);
    if (it != seen.end()) {
      seen.erase(it);
      continue;
    }
    out += cur[i] + "\n";
  }
  return out;
}

void watch(const std::function<std::string()>& render, bool tty, std::ostream& out, std::chrono::milliseconds every) {
  // Ctrl-C ends the watch normally (exit 0), after the current draw.
  struct Handlers {  // installed for the watch, the previous ones back however it ends
    struct sigaction old_int {}, old_term {};
    Handlers() {
      struct sigaction sa {};
      sa.sa_handler = on_signal;
      sigemptyset(&sa.sa_mask);
      ::sigaction(SIGINT, &sa, &old_int);
      ::sigaction(SIGTERM, &sa, &old_term);
    }
    ~Handlers() {
      ::sigaction(SIGINT, &old_int, nullptr);
      ::sigaction(SIGTERM, &old_term, nullptr);
    }
  } handlers;
  g_stop = 0;
  std::string last;
  bool first = true;
  while (!g_stop) {
    std::string now = render();
    if (tty) {
      out << "\033[H\033[2J" << now << std::flush;  // home + clear: a full redraw
    } else if (first || now != last) {
      out << changed_lines(first ? std::string() : last, now) << std::flush;
    }
    last = now;
    first = false;
    for (auto waited = std::chrono::milliseconds(0); waited < every && !g_stop; waited += std::chrono::milliseconds(50))
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string progress_line(unsigned frame, const std::string& what, const std::string& phase, double seconds) {
  static const char* const kFrames[] = {"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"};
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.1f", seconds);
  return std::string(kFrames[frame % 10]) + " " + what + ": " + (phase.empty() ? "waiting" : phase) + " (" + secs + " s)";
}

Progress::Progress(std::ostream& err, bool tty, std::string what)
    : err_(err), tty_(tty), what_(std::move(what)), start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() {
  if (tty_ && drawn_) err_ << "\r\033[K" << std::flush;
}

void Progress::update(const std::string& phase) {
  if (!tty_) return;
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  err_ << "\r\033[K" << progress_line(frame_++, what_, phase, s) << std::flush;
  drawn_ = true;
}

}  // namespace bulwark::cli
