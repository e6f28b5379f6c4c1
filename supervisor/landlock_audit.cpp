#include "supervisor/landlock_audit.h"

#include <fcntl.h>
#include <unistd.h>

#include "shared/audit.h"
#include "shared/error.h"

namespace bulwark::supervisor {
namespace {

// The value of key=VALUE in an audit record (VALUE up to the next space; quotes kept).
std::string field(const std::string& text, const std::string& key) {
  size_t p = 0;
  for (;;) {
    p = text.find(key + "=", p);
    if (p == std::string::npos) return "";
    if (p == 0 || text[p - 1] == ' ') break;
    p += key.size();
  }
  size_t start = p + key.size() + 1, end = text.find(' ', start);
  return text.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

}  // namespace

std::vector<std::string> LandlockDenialFilter::feed(int type, const std::string& text) {
  std::vector<std::string> out;
  std::string domain = field(text, "domain");
  if (domain.empty()) return out;
  if (type == kAuditLandlockAccess) {
    // "domain=1a2b blockers=fs.write_file path=..." -> "landlock fs.write_file path=..."
    std::string what = text.substr(text.find("blockers=") == std::string::npos ? 0 : text.find("blockers=") + 9);
    std::string line = "landlock " + what;
    if (domains_.count(domain)) {
      out.push_back(line);
    } else {
      waiting_.emplace_back(domain, line);
      if (waiting_.size() > 64) waiting_.erase(waiting_.begin());  // other sandboxes' records
    }
  } else if (type == kAuditLandlockDomain && field(text, "status") == "allocated" &&
             field(text, "comm") == "\"" + tag_ + "\"") {
    domains_.insert(domain);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (it->first == domain) {
        out.push_back(it->second);
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
  }
  return out;
}

LandlockAuditLog::LandlockAuditLog(std::string tag, std::function<void(const std::string&)> on_denial)
    : sock_(audit::open_reader()) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw Error(Code::kInternal, errno_text("pipe2", errno));
  stop_r_.reset(p[0]);
  stop_w_.reset(p[1]);
  thread_ = std::thread([this, tag = std::move(tag), on_denial = std::move(on_denial)] {
    LandlockDenialFilter filter(tag);
    audit::read_records(sock_.get(), stop_r_.get(), [&](int type, const std::string& text) {
      if (type != kAuditLandlockAccess && type != kAuditLandlockDomain) return;
      for (const auto& line : filter.feed(type, text)) on_denial(line);
    });
  });
}

LandlockAuditLog::~LandlockAuditLog() {
  (void)!::write(stop_w_.get(), "x", 1);
  if (thread_.joinable()) thread_.join();
}

}  // namespace bulwark::supervisor
