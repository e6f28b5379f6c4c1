#include "cli/gateway_ops.h"

#include <doctest/doctest.h>

#include <algorithm>

using namespace bulwark::cli;

TEST_CASE("ssh and scp argv: port, key, never prompting, the CLI's own known_hosts") {
  SshTarget t{"root@10.0.0.5", 2222, "/k/id", "/c/known_hosts"};
  auto a = ssh_argv(t);
  CHECK(a.front() == "ssh");
  CHECK(a.back() == "root@10.0.0.5");
  auto has = [](const std::vector<std::string>& v, const std::string& w) { return std::find(v.begin(), v.end(), w) != v.end(); };
  CHECK(has(a, "2222"));
  CHECK(has(a, "/k/id"));
  CHECK(has(a, "BatchMode=yes"));
  CHECK(has(a, "UserKnownHostsFile=/c/known_hosts"));
  auto s = scp_argv(t);
  CHECK(s.front() == "scp");
  CHECK(has(s, "-P"));
  CHECK_FALSE(has(s, "root@10.0.0.5"));  // the caller adds files
  CHECK_FALSE(has(ssh_argv({"h", 22, "", ""}), "-i"));
}

TEST_CASE("ssh_host and shell_quote") {
  CHECK(ssh_host("root@gw.example.com") == "gw.example.com");
  CHECK(ssh_host("10.0.0.5") == "10.0.0.5");
  CHECK(ssh_host("me@::1") == "[::1]");
  CHECK(shell_quote("/tmp/x") == "/tmp/x");
  CHECK(shell_quote("a b") == "'a b'");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(shell_quote("") == "''");
}

TEST_CASE("remote commands: unpack, up with the bundle's binaries and ports, down") {
  RemoteUp r;
  r.dir = "~/.bulwark";
  r.http_port = 9080;
  r.nats_port = 5222;
  r.drivers = "podman";
  CHECK(remote_unpack_command(r, "b.tar.gz") == "set -e; cd .bulwark && tar -xzf b.tar.gz && rm -f b.tar.gz");
  std::string up = remote_up_command(r);
  CHECK(up.find("cd .bulwark && BULWARK_HOME=\"$PWD/state\" BULWARK_BIN_DIR=\"$PWD/bin\"") != std::string::npos);
  CHECK(up.find("BULWARK_HTTP_PORT=9080 BULWARK_NATS_PORT=5222 BULWARK_HTTP_ADDR=0.0.0.0 scripts/up --drivers podman 1>&2") !=
        std::string::npos);
  r.drivers.clear();
  CHECK(remote_up_command(r).find("--drivers") == std::string::npos);
  CHECK(remote_down_command("/tmp/x") == "set -e; cd /tmp/x && BULWARK_HOME=\"$PWD/state\" scripts/down 1>&2");
}

TEST_CASE("root_candidates: BULWARK_ROOT, then the bundle, install and source-tree layouts") {
  auto c = root_candidates("/opt/b/bin/bulwark", "/r");
  REQUIRE(c.size() >= 4);
  CHECK(c[0] == "/r");
  CHECK(c[1] == "/opt/b");
  CHECK(c[2] == "/opt/b/share/bulwark");
  CHECK(c[3] == "/opt");
  CHECK(root_candidates("/opt/b/bin/bulwark", "")[0] == "/opt/b");
}
