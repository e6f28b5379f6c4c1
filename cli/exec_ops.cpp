#include "cli/exec_ops.h"

#include <poll.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "shared/error.h"
#include "shared/process.h"
#include "shared/util.h"

namespace bulwark::cli {

using nlohmann::json;

json exec_body(const std::vector<std::string>& command, const std::vector<std::string>& env, const std::string& workdir,
               const std::optional<std::string>& stdin_text, int timeout_s) {
  if (command.empty() || command[0].empty()) throw CliError{kUsage, "give the command after --, e.g. bulwark sandbox exec demo -- ls -l"};
  json b = {{"command", command}};
  for (const auto& e : env) {
    size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0) throw CliError{kUsage, "--env: expected NAME=value, got '" + e + "'"};
    b["env"][e.substr(0, eq)] = e.substr(eq + 1);
  }
  if (!workdir.empty()) b["workdir"] = workdir;
  if (stdin_text) b["stdin"] = *stdin_text;
  if (timeout_s < 0) throw CliError{kUsage, "--timeout: must be positive"};
  if (timeout_s > 0) b["timeout_s"] = timeout_s;
  return b;
}

void LineSplitter::feed(const char* data, size_t n, const std::function<void(const std::string&)>& on_line) {
  buf_.append(data, n);
  size_t start = 0;
  for (size_t nl; (nl = buf_.find('\n', start)) != std::string::npos; start = nl + 1) on_line(buf_.substr(start, nl - start));
  buf_.erase(0, start);
}

namespace {
int end_code(const json& j, std::ostream& err) {
  if (j.value("timed_out", false)) err << "bulwark: the command timed out and was killed\n";
  if (j.value("truncated", false)) err << "bulwark: output over the limit was dropped\n";
  if (j.contains("error") && j["error"].is_string() && !j["error"].get<std::string>().empty())
    err << "bulwark: " << j["error"].get<std::string>() << "\n";
  return j.value("exit_code", static_cast<int>(kFailure));
}
}  // namespace

std::optional<int> apply_frame(const json& j, std::ostream& out, std::ostream& err) {
  if (j.contains("error") && j["error"].is_object())
    throw CliError{kFailure, "exec: " + j["error"].value("message", std::string("failed"))};
  if (j.contains("stream")) {
    (j["stream"] == "stderr" ? err : out) << j.value("data", "");
    (j["stream"] == "stderr" ? err : out).flush();
    return std::nullopt;
  }
  if (j.contains("exit_code")) return end_code(j, err);
  return std::nullopt;
}

int apply_result(const json& j, std::ostream& out, std::ostream& err) {
  out << j.value("stdout", "");
  err << j.value("stderr", "");
  return end_code(j, err);
}

CliError http_error(const std::string& what, int status, const std::string& body) {
  json j = json::parse(body, nullptr, false);
  std::string msg = "HTTP " + std::to_string(status);
  if (!j.is_discarded() && j.contains("error") && j["error"].is_object()) {
    msg = j["error"].value("message", msg);
    std::string field = j["error"].value("field", "");
    if (!field.empty()) msg += " [field: " + field + "]";
  }
  return CliError{status == 404 ? kNotFound : status == 401 || status == 403 ? kDenied : kFailure, what + ": " + msg};
}

std::string exec_path(const std::string& ref, bool stream) {
  return "/v1/sandboxes/" + httplib::detail::encode_query_param(ref) + "/exec" + (stream ? "?stream=true" : "");
}

std::string files_path(const std::string& ref, const std::string& remote) {
  if (remote.empty() || remote[0] != '/') throw CliError{kUsage, "the path inside the sandbox must be absolute, got '" + remote + "'"};
  return "/v1/sandboxes/" + httplib::detail::encode_query_param(ref) + "/files?path=" + httplib::detail::encode_query_param(remote);
}

std::vector<std::string> local_tar_create(const std::string& local) {
  std::filesystem::path p = std::filesystem::absolute(local).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  std::string parent = p.parent_path().string();
  return {"tar", "-c", "-f", "-", "-C", parent.empty() ? "/" : parent, p.filename().string()};
}

std::vector<std::string> local_tar_extract(const std::string& dir) { return {"tar", "-x", "-f", "-", "-C", dir}; }

ExecClient::ExecClient(const std::string& url, const std::string& token, const TlsFiles& tls)
    : url_(url), http_(make_http_client(url, tls)) {
  if (!token.empty()) http_.set_bearer_token_auth(token.c_str());
  http_.set_tcp_nodelay(true);
  http_.set_connection_timeout(5);
  http_.set_read_timeout(24 * 3600);  // a command may run (or stay silent) long; its timeout bounds it
  http_.set_write_timeout(300);
}

namespace {
CliError unreachable(const std::string& url, httplib::Error e) {
  return CliError{kUnreachable, unreachable_message(url, e)};
}
}  // namespace

int ExecClient::exec(const std::string& ref, const json& body, bool stream, std::ostream& out, std::ostream& err) {
  std::string path = exec_path(ref, stream);
  if (!stream) {
    auto r = http_.Post(path, body.dump(), "application/json");
    if (!r) throw unreachable(url_, r.error());
    if (r->status != 200) throw http_error("exec", r->status, r->body);
    json j = json::parse(r->body, nullptr, false);
    if (j.is_discarded()) throw CliError{kFailure, "exec: the gateway sent a non-JSON reply"};
    return apply_result(j, out, err);
  }
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "application/x-ndjson");
  std::optional<int> code;
  std::optional<CliError> failed;
  std::string error_body;
  int status = 0;
  LineSplitter lines;
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (status != 200) {
      error_body.append(data, n);
      return true;
    }
    try {
      lines.feed(data, n, [&](const std::string& line) {
        if (line.empty()) return;
        json j = json::parse(line, nullptr, false);
        if (j.is_discarded()) throw CliError{kFailure, "exec: the gateway sent a line that is not JSON"};
        if (auto c = apply_frame(j, out, err)) code = c;
      });
    } catch (const CliError& e) {
      failed = e;
      return false;
    }
    return true;
  };
  httplib::Response res;
  httplib::Error e = httplib::Error::Success;
  bool ok = http_.send(req, res, e);
  if (failed) throw *failed;
  if (!ok && status == 0) throw unreachable(url_, e);
  if (status != 200) throw http_error("exec", status, error_body.empty() ? res.body : error_body);
  if (!code) throw CliError{kFailure, "exec: the gateway's answer ended before the command's exit code (the connection was cut)"};
  return *code;
}

json ExecClient::upload(const std::string& ref, const std::string& local, const std::string& remote) {
  std::string path = files_path(ref, remote);
  if (!std::filesystem::exists(local)) throw CliError{kUsage, "upload: " + local + " does not exist"};
  Process tar = Process::spawn({.argv = local_tar_create(local), .pipe_stdout = true, .pipe_stderr = true});
  std::string archive, errors;
  pollfd fds[2] = {{tar.stdout_fd(), POLLIN, 0}, {tar.stderr_fd(), POLLIN, 0}};
  char buf[65536];
  for (int open = 2; open > 0;) {
    if (::poll(fds, 2, -1) < 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        fds[i].fd = -1;
        --open;
      } else {
        (i == 0 ? archive : errors).append(buf, static_cast<size_t>(n));
      }
    }
  }
  if (int rc = tar.wait(); rc != 0) throw CliError{kFailure, "upload: tar of " + local + " failed (exit " + std::to_string(rc) + "): " + errors};
  auto r = http_.Put(path, archive, "application/x-tar");
  if (!r) throw unreachable(url_, r.error());
  if (r->status != 200) throw http_error("upload", r->status, r->body);
  return json::parse(r->body, nullptr, false);
}

size_t ExecClient::download(const std::string& ref, const std::string& remote, const std::string& local) {
  std::string path = files_path(ref, remote);
  std::error_code ec;
  std::filesystem::create_directories(local, ec);
  if (!std::filesystem::is_directory(local)) throw CliError{kUsage, "download: " + local + " is not a directory"};
  auto r = http_.Get(path);
  if (!r) throw unreachable(url_, r.error());
  if (r->status != 200) throw http_error("download", r->status, r->body);
  // Through a file: tar reads the archive from it (Process gives no stdin pipe).
  TempDir tmp("bulwark-download");
  std::string file = tmp.file("archive.tar");
  {
    std::ofstream f(file, std::ios::binary);
    f.write(r->body.data(), static_cast<std::streamsize>(r->body.size()));
    if (!f) throw CliError{kFailure, "download: cannot write " + file};
  }
  auto argv = local_tar_extract(local);
  argv[3] = file;
  Process tar = Process::spawn({.argv = argv, .output_file = tmp.file("tar.log")});
  if (int rc = tar.wait(); rc != 0) {
    std::ifstream log(tmp.file("tar.log"));
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    throw CliError{kFailure, "download: extracting into " + local + " failed (tar exit " + std::to_string(rc) + "): " + text};
  }
  return r->body.size();
}

}  // namespace bulwark::cli
