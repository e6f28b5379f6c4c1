#pragma once
// --watch and progress output. On a terminal --watch redraws the screen every 2 s and a wait
// shows a spinner with the phase; elsewhere (pipes, CI logs, tests) --watch prints only the lines
// that changed and a wait prints nothing, so output stays diffable.
#include <chrono>
#include <functional>
#include <iosfwd>
#include <string>

namespace bulwark::cli {

// The lines of `now` that `before` did not have, in order; the first line (a table's header) only
// when before is empty. Pure.
std::string changed_lines(const std::string& before, const std::string& now);

// Calls render every `every` and shows its text (redrawn when tty, else changed_lines) until
// Ctrl-C (SIGINT/SIGTERM: returns then), or until render throws, which propagates.
void watch(const std::function<std::string()>& render, bool tty, std::ostream& out,
           std::chrono::milliseconds every = std::chrono::seconds(2));

// "⠹ sandbox demo: STARTING (3.4 s)": one frame of the spinner line. Pure.
std::string progress_line(unsigned frame, const std::string& what, const std::string& phase, double seconds);

// A spinner on stderr while waiting for a phase; silent when not a terminal. Clears its line when
// destroyed so the result prints on a clean line.
class Progress {
 public:
  Progress(std::ostream& err, bool tty, std::string what);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void update(const std::string& phase);

 private:
  std::ostream& err_;
  bool tty_;
  std::string what_;
  unsigned frame_ = 0;
  std::chrono::steady_clock::time_point start_;
  bool drawn_ = false;
};

}  // namespace bulwark::cli
