#pragma once
// `bulwark sandbox exec|upload|download`: run a command in a running sandbox and move files in
// and out of it (docs/exec.md). Request bodies, NDJSON frames and error mapping are pure and
// unit-tested; ExecClient is the HTTP side.
#include <httplib.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "cli/client.h"

namespace bulwark::cli {

// The POST /v1/sandboxes/{id}/exec body. env entries are "K=V" (--env). Throws CliError(kUsage).
nlohmann::json exec_body(const std::vector<std::string>& command, const std::vector<std::string>& env,
                         const std::string& workdir, const std::optional<std::string>& stdin_text, int timeout_s);

// Splits a byte stream into lines (NDJSON); a partial line waits for the rest.
class LineSplitter {
 public:
  void feed(const char* data, size_t n, const std::function<void(const std::string&)>& on_line);
  const std::string& rest() const { return buf_; }

 private:
  std::string buf_;
};

// One NDJSON frame: output goes to out/err; the end frame gives the command's exit code (a
// timeout is reported on err). An {"error":...} line throws CliError.
std::optional<int> apply_frame(const nlohmann::json& frame, std::ostream& out, std::ostream& err);
// The non-streaming answer, printed the same way; returns the command's exit code.
int apply_result(const nlohmann::json& result, std::ostream& out, std::ostream& err);
// A non-2xx answer as the CLI's error (exit code by status, message from the JSON error body).
CliError http_error(const std::string& what, int status, const std::string& body);

std::string exec_path(const std::string& ref, bool stream);
std::string files_path(const std::string& ref, const std::string& remote);
// tar of LOCAL (a file or a directory, by its last name) on stdout; tar extracting into DIR.
std::vector<std::string> local_tar_create(const std::string& local);
std::vector<std::string> local_tar_extract(const std::string& dir);

class ExecClient {
 public:
  ExecClient(const std::string& url, const std::string& token, const TlsFiles& tls = {});
  // Runs the command; its output goes to out/err as it arrives (stream) or at the end. Returns
  // the command's exit code. Throws CliError.
  int exec(const std::string& ref, const nlohmann::json& body, bool stream, std::ostream& out, std::ostream& err);
  // PUT files: LOCAL (file or directory) into the sandbox's directory REMOTE.
  nlohmann::json upload(const std::string& ref, const std::string& local, const std::string& remote);
  // GET files: REMOTE out of the sandbox into the local directory LOCAL. Returns the archive's size.
  size_t download(const std::string& ref, const std::string& remote, const std::string& local);

 private:
  std::string url_;
  httplib::Client http_;
};

}  // namespace bulwark::cli
