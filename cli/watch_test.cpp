#include "cli/watch.h"

#include <doctest/doctest.h>

#include <sstream>
#include <stdexcept>

using namespace bulwark::cli;

TEST_CASE("changed_lines: the header once, then only new or changed rows") {
  std::string t1 = "NAME  PHASE\na     PENDING\nb     READY\n";
  std::string t2 = "NAME  PHASE\na     READY\nb     READY\nc     PENDING\n";
  CHECK(changed_lines("", t1) == t1);
  CHECK(changed_lines(t1, t2) == "a     READY\nc     PENDING\n");
  CHECK(changed_lines(t2, t2).empty());
}

TEST_CASE("watch without a terminal prints the first table, then changes only; an error ends it") {
  int calls = 0;
  std::ostringstream out;
  auto render = [&]() -> std::string {
    ++calls;
    if (calls == 1) return "H\nx 1\n";
    if (calls == 2) return "H\nx 1\n";
    if (calls == 3) return "H\nx 2\n";
    throw std::runtime_error("gateway gone");
  };
  CHECK_THROWS_WITH(watch(render, false, out, std::chrono::milliseconds(1)), "gateway gone");
  CHECK(out.str() == "H\nx 1\nx 2\n");
  CHECK(calls == 4);
}

TEST_CASE("watch on a terminal redraws the whole screen each time") {
  int calls = 0;
  std::ostringstream out;
  auto render = [&]() -> std::string {
    if (++calls > 2) throw std::runtime_error("stop");
    return "T\n";
  };
  CHECK_THROWS(watch(render, true, out, std::chrono::milliseconds(1)));
  CHECK(out.str() == "\033[H\033[2JT\n\033[H\033[2JT\n");
}

TEST_CASE("progress: a spinner line on a terminal, nothing otherwise") {
  CHECK(progress_line(0, "sandbox demo", "STARTING", 3.42) == "⠋ sandbox demo: STARTING (3.4 s)");
  CHECK(progress_line(11, "sandbox demo", "", 0) == "⠙ sandbox demo: waiting (0.0 s)");
  std::ostringstream quiet, loud;
  {
    Progress p(quiet, false, "sandbox x");
    p.update("PENDING");
  }
  CHECK(quiet.str().empty());
  {
    Progress p(loud, true, "sandbox x");
    p.update("PENDING");
  }
  CHECK(loud.str().find("sandbox x: PENDING") != std::string::npos);
  CHECK(loud.str().substr(loud.str().size() - 4) == "\r\033[K");
}
