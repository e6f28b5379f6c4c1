// bulwark-nats-auth: makes (once) and keeps the NATS identities of a Bulwark installation in one
// directory: the operator, the SYS account nats-server needs, the BULWARK account, a .creds file
// per service, and nats-auth.conf for nats-server to include (docs/security.md, "NATS").
// With --sandbox-id it prints credentials for that sandbox's supervisor (what gateway-api mints).
#include <sys/stat.h>

#include <ctime>
#include <filesystem>
#include <iostream>

#include "shared/error.h"
#include "shared/flags.h"
#include "shared/nats_auth.h"
#include "shared/pki.h"

namespace na = bulwark::nats_auth;

namespace {

// The key kept in dir/name, made when missing.
na::KeyPair key(const std::string& dir, const std::string& name, na::KeyType type) {
  const std::string path = dir + "/" + name;
  if (std::filesystem::exists(path)) {
    auto k = na::KeyPair::from_seed(na::read_text_file(path, name));
    if (k.type() != type) throw bulwark::Error(bulwark::Code::kFailedPrecondition, path + " holds a key of another type");
    return k;
  }
  auto k = na::KeyPair::create(type);
  na::write_secret_file(path, k.encoded_seed() + "\n");
  return k;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir, sandbox_id, pki_dir, pki_mount;
  std::vector<std::string> tls_sans;  // as the gateway's --tls-san: whoever makes the PKI first gives the names
  std::vector<std::string> exports;   // SERVICE=DIR
  bulwark::Flags flags("bulwark-nats-auth",
                       "NATS operator-mode identities for Bulwark: writes DIR/nats-auth.conf (include it in nats-server's "
                       "config), DIR/<service>.creds and the seeds (mode 0600); idempotent");
  flags.text("dir", &dir, "directory of the identities (made mode 0700)")
      .text("sandbox-id", &sandbox_id, "print credentials for this sandbox's supervisor instead")
      .text("pki-dir", &pki_dir,
            "also make sure the Bulwark PKI exists there (shared/pki.h) and make nats-server TLS-only with its "
            "nats-server certificate; clients then need --nats-ca <pki-dir>/ca.crt")
      .text("pki-mount", &pki_mount,
            "where nats-server will find the PKI's files, when not at --pki-dir (a Kubernetes Secret mounted "
            "elsewhere: scripts/helm-nats-secret); default: --pki-dir")
      .list("tls-san", &tls_sans, "extra DNS name or IP for the PKI's server certificates when they are created (repeatable)")
      .list("export", &exports,
            "SERVICE=DIR: also copy that service's .creds (and with --pki-dir the CA certificate) into DIR, and "
            "nothing else, for a container that mounts only DIR (compose.yaml; repeatable)");
  if (int rc = flags.parse(argc, argv); rc >= 0) return rc;
  try {
    if (dir.empty()) throw bulwark::Error(bulwark::Code::kInvalidArgument, "--dir is required", "dir");
    std::filesystem::create_directories(dir);
    ::chmod(dir.c_str(), 0700);
    const int64_t now = std::time(nullptr);
    auto op = key(dir, "operator.seed", na::KeyType::kOperator);
    auto sys = key(dir, "sys.seed", na::KeyType::kAccount);
    auto account = key(dir, "account.seed", na::KeyType::kAccount);
    if (!sandbox_id.empty()) {
      std::cout << na::new_user_creds(account, "sandbox-" + sandbox_id, na::sandbox_permissions(sandbox_id), now);
      return 0;
    }
    std::string tls;
    if (!pki_dir.empty()) {
      bulwark::pki::Options pki_options;
      pki_options.extra_names = tls_sans;
      bulwark::pki::ensure_pki(pki_dir, pki_options);
      auto p = bulwark::pki::paths(pki_mount.empty() ? pki_dir : pki_mount);
      // Every client must speak TLS (nats-server 2.9 has no plain fallback once tls is set).
      tls = "tls {\n  cert_file: \"" + p.nats_cert + "\"\n  key_file: \"" + p.nats_key + "\"\n  ca_file: \"" + p.ca_cert +
            "\"\n  timeout: 5\n}\n";
    }
    na::write_secret_file(dir + "/nats-auth.conf",
                          "# Written by bulwark-nats-auth: NATS operator mode (docs/security.md, NATS).\n" + tls +
                              na::server_config(na::operator_jwt(op, "bulwark", sys.public_key(), now), sys.public_key(),
                                                {{sys.public_key(), na::account_jwt(op, sys.public_key(), "SYS", false, now)},
                                                 {account.public_key(), na::account_jwt(op, account.public_key(), "BULWARK", true, now)}}));
    // Kept once made, so that running services keep valid credentials across a rerun.
    for (const auto& svc : na::service_names()) {
      const std::string path = dir + "/" + svc + ".creds";
      if (!std::filesystem::exists(path))
        na::write_secret_file(path, na::new_user_creds(account, svc, na::service_permissions(svc), now));
    }
    // Tools and tests that need every subject (nats CLI, debugging): the operator's own user.
    const std::string admin = dir + "/admin.creds";
    if (!std::filesystem::exists(admin)) {
      na::Permissions all;
      all.pub_allow = {">"};
      all.sub_allow = {">"};
      na::write_secret_file(admin, na::new_user_creds(account, "admin", all, now));
    }
    for (const auto& e : exports) {
      const auto eq = e.find('=');
      const std::string svc = e.substr(0, eq), to = eq == std::string::npos ? "" : e.substr(eq + 1);
      if (eq == std::string::npos || svc.empty() || to.empty())
        throw bulwark::Error(bulwark::Code::kInvalidArgument, "--export wants SERVICE=DIR, not '" + e + "'", "export");
      const std::string creds = dir + "/" + svc + ".creds";
      if (!std::filesystem::exists(creds))
        throw bulwark::Error(bulwark::Code::kInvalidArgument, "--export " + e + ": no credentials for service '" + svc + "'",
                             "export");
      std::filesystem::create_directories(to);
      ::chmod(to.c_str(), 0700);
      na::write_secret_file(to + "/" + svc + ".creds", na::read_text_file(creds, "export") + "\n");
      if (!pki_dir.empty())
        na::write_secret_file(to + "/ca.crt", na::read_text_file(bulwark::pki::paths(pki_dir).ca_cert, "export") + "\n");
    }
    std::cout << dir << "/nats-auth.conf\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bulwark-nats-auth: " << e.what() << "\n";
    return 1;
  }
}
