// `bulwark gateway start --remote` for real: a private sshd on loopback (its own host key and an
// authorized key for root), the bundle copied with scp, scripts/up run there over ssh in a remote
// directory of its own, the admin token copied back, and `bulwark status` through the new config
// entry; `gateway stop` leaves none of the processes it started.
#include <doctest/doctest.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;

namespace {

ProcessResult run(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env = {}) {
  // None of the caller's gateway settings.
  auto env = environment_without([](const std::string& kv) { return kv.rfind("BULWARK_", 0) == 0; });
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  return run_process(argv, env);
}

// Processes whose command line mentions `needle` (the remote directory).
std::vector<std::string> processes_with(const std::string& needle) {
  std::vector<std::string> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || std::to_string(::getpid()) == e->d_name) continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    for (auto& c : cmd) c = c == '\0' ? ' ' : c;
    if (cmd.find(needle) != std::string::npos) out.push_back(std::string(e->d_name) + ": " + cmd);
  }
  ::closedir(d);
  return out;
}

mode_t mode_of(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? st.st_mode & 0777 : 0;
}

// Whatever happens in the test, what scripts/up started in the remote directory is stopped.
struct RemoteDown {
  std::string dir;
  ~RemoteDown() {
    if (::access((dir + "/scripts/down").c_str(), X_OK) == 0)
      run({"bash", "-c", "cd \"$0\" && BULWARK_HOME=\"$PWD/state\" scripts/down >/dev/null 2>&1", dir});
  }
};
}  // namespace

TEST_CASE("gateway start --remote installs and starts a gateway over ssh; status works through the config; stop cleans up") {
  require_binary("sshd", "openssh-server");
  require_binary("ssh", "openssh-client");
  require_binary("scp", "openssh-client");
  TempDir dir("bulwark-remote");
  REQUIRE(run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir.file("host_key")}).code == 0);
  REQUIRE(run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir.file("client_key")}).code == 0);
  std::string pub = read_file(dir.file("client_key.pub"));
  std::ofstream(dir.file("authorized_keys")) << pub;
  ::chmod(dir.file("authorized_keys").c_str(), 0600);
  ::mkdir("/run/sshd", 0755);  // sshd's privilege separation directory
  int ssh_port = free_port();
  std::ofstream(dir.file("sshd_config")) << "Port " << ssh_port << "\nListenAddress 127.0.0.1\nHostKey " << dir.file("host_key")
                                         << "\nPidFile " << dir.file("sshd.pid") << "\nAuthorizedKeysFile "
                                         << dir.file("authorized_keys")
                                         << "\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                                            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                                            "Subsystem sftp internal-sftp\n";
  Process sshd = Process::spawn({.argv = {"/usr/sbin/sshd", "-D", "-e", "-f", dir.file("sshd_config")},
                                 .output_file = dir.file("sshd.log")});
  REQUIRE_MESSAGE(wait_until([&] { return port_open(ssh_port); }, std::chrono::seconds(10)), read_file(dir.file("sshd.log")));

  std::string remote_dir = dir.file("remote");
  RemoteDown cleanup{remote_dir};
  int http_port = free_port(), nats_port = free_port();
  std::vector<std::string> env = {"BULWARK_CONFIG_DIR=" + dir.file("config")};
  auto start = run({bin("bulwark"), "gateway", "start", "--remote", "root@127.0.0.1", "--ssh-port", std::to_string(ssh_port),
                    "--ssh-key", dir.file("client_key"), "--remote-dir", remote_dir, "--http-port", std::to_string(http_port),
                    "--nats-port", std::to_string(nats_port), "--drivers", "podman", "--listen", "127.0.0.1", "--name", "box",
                    "--wait", "30"},
                   env);
  INFO("stderr: " << start.err << "\nsshd: " << read_file(dir.file("sshd.log"))
                   << "\nremote gateway-api.log: " << read_file(remote_dir + "/state/logs/gateway-api.log")
                   << "\nremote nats-server.log: " << read_file(remote_dir + "/state/logs/nats-server.log"));
  REQUIRE(start.code == 0);
  // scripts/up serves HTTPS with client certificates: the CA and the CLI's pair came back too.
  CHECK(start.out == "gateway box is up at https://127.0.0.1:" + std::to_string(http_port) + " (selected)\n");
  // What was copied: the binaries and the scripts, under the remote directory only.
  CHECK(::access((remote_dir + "/bin/bulwark-gateway-api").c_str(), X_OK) == 0);
  CHECK(::access((remote_dir + "/scripts/up").c_str(), X_OK) == 0);
  CHECK(::access((remote_dir + "/bulwark-bundle.tar.gz").c_str(), F_OK) != 0);
  // The token came back private, and the config is private too.
  CHECK(mode_of(dir.file("config")) == 0700);
  CHECK(mode_of(dir.file("config/config.yaml")) == 0600);
  CHECK(mode_of(dir.file("config/box.token")) == 0600);
  CHECK(mode_of(dir.file("config/known_hosts")) == 0600);  // the remote's host key, accepted on first use
  CHECK(read_file(dir.file("config/box.token")) == read_file(remote_dir + "/state/admin.token"));
  CHECK(mode_of(dir.file("config/box-client-cli-admin.key")) == 0600);
  CHECK(read_file(dir.file("config/box-ca.crt")) == read_file(remote_dir + "/state/pki/ca.crt"));

  // No --gateway, no token: both come from the selected config gateway.
  auto status = run({bin("bulwark"), "status", "-o", "json"}, env);
  INFO("status: " << status.out << status.err);
  REQUIRE(status.code == 0);
  auto st = nlohmann::json::parse(status.out);
  bool gateway_live = false;
  for (const auto& s : st["services"])
    if (s.value("service", "") == "gateway-api" || s.value("name", "") == "gateway-api") gateway_live = s.value("live", false);
  CHECK_MESSAGE(gateway_live, status.out);

  auto list = run({bin("bulwark"), "gateway", "list"}, env);
  CHECK(list.code == 0);
  CHECK_MESSAGE(list.out.find("*  box") != std::string::npos, list.out);
  auto info = run({bin("bulwark"), "gateway", "info", "-o", "json"}, env);
  CHECK(info.code == 0);
  CHECK(nlohmann::json::parse(info.out)["url"] == "https://127.0.0.1:" + std::to_string(http_port));

  // Without the config's token the gateway refuses: the token really is what authenticates.
  auto anon = run({bin("bulwark"), "--gateway", "https://127.0.0.1:" + std::to_string(http_port), "--ca-cert",
                   dir.file("config/box-ca.crt"), "--client-cert", dir.file("config/box-client-cli-admin.crt"), "--client-key",
                   dir.file("config/box-client-cli-admin.key"), "sandbox", "list"},
                  {"BULWARK_CONFIG_DIR=" + dir.file("other")});
  CHECK(anon.code == 7);
  // A --token flag wins over the config's token (and this one is refused).
  auto wrong = run({bin("bulwark"), "--token", "bwk_wrong", "sandbox", "list"}, env);
  CHECK_MESSAGE(wrong.code == 7, wrong.err);

  auto stop = run({bin("bulwark"), "gateway", "stop"}, env);
  INFO("stop: " << stop.err);
  CHECK(stop.code == 0);
  CHECK(stop.out == "gateway box stopped\n");
  std::vector<std::string> left;
  wait_until([&] { return (left = processes_with(remote_dir + "/")).empty(); }, std::chrono::seconds(10));
  CHECK_MESSAGE(left.empty(), (left.empty() ? std::string() : left.front()));
  sshd.stop();
}
