#include "cli/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

#include "cli/client.h"
#include "shared/process.h"

namespace bulwark::cli {

namespace {

std::string where_at(const std::string& where, const YAML::Node& n) {
  auto m = n.Mark();
  return m.line >= 0 ? where + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) : where;
}

std::string scalar(const std::string& where, const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) throw CliError{kUsage, where_at(where, n) + ": " + key + ": must be a string"};
  return n.as<std::string>();
}

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 63) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
  });
}

std::string errno_message(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

void ensure_private_dir(const std::string& dir) {
  // Parents as usual (umask), the config dir itself 0700.
  for (size_t slash = dir.find('/', 1); slash != std::string::npos; slash = dir.find('/', slash + 1))
    if (::mkdir(dir.substr(0, slash).c_str(), 0755) != 0 && errno != EEXIST)
      throw CliError{kFailure, errno_message("cannot create", dir.substr(0, slash))};
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) throw CliError{kFailure, errno_message("cannot create", dir)};
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) throw CliError{kFailure, errno_message("cannot stat", dir)};
  if (!S_ISDIR(st.st_mode)) throw CliError{kUsage, dir + " is not a directory: move it away or set BULWARK_CONFIG_DIR"};
  if ((st.st_mode & 077) != 0 && ::chmod(dir.c_str(), 0700) != 0) throw CliError{kFailure, errno_message("cannot chmod 700", dir)};
}

}  // namespace

const GatewayEntry* Config::find(const std::string& name) const {
  for (const auto& g : gateways)
    if (g.name == name) return &g;
  return nullptr;
}

void Config::upsert(const GatewayEntry& e) {
  if (!valid_name(e.name))
    throw CliError{kUsage, "gateway name '" + e.name + "': use 1-63 of a-z, 0-9, '-', '_', '.' (--name)"};
  if (!valid_gateway_url(e.url))
    throw CliError{kUsage, "gateway URL '" + e.url + "' is not like http://127.0.0.1:8080 or https://gw.example.com"};
  for (auto& g : gateways)
    if (g.name == e.name) {
      g = e;
      return;
    }
  gateways.push_back(e);
}

void Config::select(const std::string& name) {
  if (!find(name)) {
    std::string known;
    for (const auto& g : gateways) known += (known.empty() ? "" : ", ") + g.name;
    throw CliError{kNotFound, "no gateway named '" + name + "' in the config (" + (known.empty() ? "none yet" : "known: " + known) +
                                  "); add it with `bulwark gateway add URL --name " + name + "`"};
  }
  selected = name;
}

void Config::remove(const std::string& name) {
  if (!find(name)) select(name);  // throws the same "no such gateway" message
  gateways.erase(std::remove_if(gateways.begin(), gateways.end(), [&](const GatewayEntry& g) { return g.name == name; }),
                 gateways.end());
  if (selected == name) selected.clear();
}

std::string config_dir(const Getenv& env) {
  if (auto d = env("BULWARK_CONFIG_DIR"); !d.empty()) return d;
  if (auto x = env("XDG_CONFIG_HOME"); !x.empty()) return x + "/bulwark";
  if (auto h = env("HOME"); !h.empty()) return h + "/.config/bulwark";
  return "";  // no home (a service, a bare container): no config, flags and environment only
}

Config parse_config(const std::string& text, const std::string& where) {
  Config c;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw CliError{kUsage, where + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) + ": " + e.msg};
  }
  if (root.IsNull()) return c;
  if (!root.IsMap()) throw CliError{kUsage, where_at(where, root) + ": expected a map with `selected` and `gateways`"};
  for (const auto& kv : root) {
    std::string key = kv.first.as<std::string>();
    if (key == "selected") {
      c.selected = kv.second.IsNull() ? "" : scalar(where, kv.second, key);
    } else if (key == "gateways") {
      if (kv.second.IsNull()) continue;
      if (!kv.second.IsSequence()) throw CliError{kUsage, where_at(where, kv.second) + ": gateways: must be a list"};
      for (size_t i = 0; i < kv.second.size(); ++i) {
        const auto& n = kv.second[i];
        std::string path = "gateways[" + std::to_string(i) + "]";
        if (!n.IsMap()) throw CliError{kUsage, where_at(where, n) + ": " + path + ": must be a map"};
        GatewayEntry e;
        for (const auto& f : n) {
          std::string k = f.first.as<std::string>();
          std::string* into = k == "name"          ? &e.name
                              : k == "url"         ? &e.url
                              : k == "token"       ? &e.token
                              : k == "token_file"  ? &e.token_file
                              : k == "ca_cert"     ? &e.ca_cert
                              : k == "client_cert" ? &e.client_cert
                              : k == "client_key"  ? &e.client_key
                              : k == "home"        ? &e.home
                              : k == "ssh"         ? &e.ssh
                              : k == "ssh_port"    ? &e.ssh_port
                              : k == "ssh_key"     ? &e.ssh_key
                              : k == "remote_dir"  ? &e.remote_dir
                                                   : nullptr;
          if (!into)
            throw CliError{kUsage, where_at(where, f.first) + ": " + path + "." + k +
                                       ": unknown key; allowed: name, url, token, token_file, ca_cert, client_cert, client_key, home, ssh, ssh_port, "
                                       "ssh_key, remote_dir"};
          *into = scalar(where, f.second, path + "." + k);
        }
        if (e.name.empty() || e.url.empty()) throw CliError{kUsage, where_at(where, n) + ": " + path + ": needs a name and a url"};
        if (c.find(e.name)) throw CliError{kUsage, where_at(where, n) + ": " + path + ": a second gateway named " + e.name};
        c.gateways.push_back(e);
      }
    } else {
      throw CliError{kUsage, where_at(where, kv.first) + ": " + key + ": unknown key; allowed: selected, gateways"};
    }
  }
  if (!c.selected.empty() && !c.find(c.selected))
    throw CliError{kUsage, where + ": selected: no gateway named " + c.selected + " in gateways"};
  return c;
}

std::string dump_config(const Config& c) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "selected" << YAML::Value << c.selected;
  e << YAML::Key << "gateways" << YAML::Value << YAML::BeginSeq;
  for (const auto& g : c.gateways) {
    e << YAML::BeginMap;
    auto field = [&](const char* k, const std::string& v) {
      if (!v.empty()) e << YAML::Key << k << YAML::Value << v;
    };
    field("name", g.name);
    field("url", g.url);
    field("token", g.token);
    field("token_file", g.token_file);
    field("ca_cert", g.ca_cert);
    field("client_cert", g.client_cert);
    field("client_key", g.client_key);
    field("home", g.home);
    field("ssh", g.ssh);
    field("ssh_port", g.ssh_port);
    field("ssh_key", g.ssh_key);
    field("remote_dir", g.remote_dir);
    e << YAML::EndMap;
  }
  e << YAML::EndSeq << YAML::EndMap;
  return std::string("# bulwark CLI config (docs/cli.md); holds credentials: keep it 0600\n") + e.c_str() + "\n";
}

bool valid_gateway_url(const std::string& url) {
  size_t host_at = url.rfind("http://", 0) == 0 ? 7 : url.rfind("https://", 0) == 0 ? 8 : 0;
  if (host_at == 0 || url.size() == host_at) return false;
  std::string rest = url.substr(host_at);
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.empty() || rest.find_first_of("/?#@ \t") != std::string::npos) return false;
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']') == std::string::npos) {
    std::string port = rest.substr(colon + 1);
    if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit) || std::stoi(port) < 1 ||
        std::stoi(port) > 65535)
      return false;
    if (colon == 0) return false;
  }
  return true;
}

std::string default_gateway_name(const std::string& url) {
  size_t at = url.find("://");
  std::string host = at == std::string::npos ? url : url.substr(at + 3);
  host = host.substr(0, host.find_first_of(":/"));
  std::string out;
  for (char c : host) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') ? static_cast<char>(std::tolower(c)) : '-';
  return out.empty() ? "gateway" : out.substr(0, 63);
}

std::string private_mode_problem(const std::string& path, mode_t mode) {
  if ((mode & 077) == 0) return "";
  return path + " holds credentials but group or others may access it: run `chmod 600 " + path + "`";
}

Target resolve_target(const Target& given, const Config& c) {
  Target t;
  const GatewayEntry* entry = nullptr;
  if (given.url.empty()) {
    entry = c.selected.empty() ? nullptr : c.find(c.selected);
    t.url = entry ? entry->url : "http://127.0.0.1:8080";
  } else if (given.url.find("://") == std::string::npos) {
    entry = c.find(given.url);  // --gateway NAME: a config gateway by its name
    if (!entry) throw CliError{kUsage, "--gateway " + given.url + ": not a URL and no config gateway has that name (`bulwark gateway list`)"};
    t.url = entry->url;
  } else {
    t.url = given.url;
    // The same URL as a config gateway: its credentials belong to it.
    for (const auto& g : c.gateways)
      if (g.url == given.url) entry = &g;
  }
  if (entry) t.entry = entry->name;
  // A flag's or env's token (either kind) wins over both of the entry's.
  if (!given.token.empty() || !given.token_file.empty()) {
    t.token = given.token;
    t.token_file = given.token_file;
  } else if (entry) {
    t.token = entry->token;
    t.token_file = entry->token_file;
    t.token_from_config = true;
  }
  auto pick = [&](const std::string& flag, const std::string& from_entry) { return !flag.empty() ? flag : entry ? from_entry : ""; };
  t.ca_cert = pick(given.ca_cert, entry ? entry->ca_cert : "");
  t.client_cert = pick(given.client_cert, entry ? entry->client_cert : "");
  t.client_key = pick(given.client_key, entry ? entry->client_key : "");
  return t;
}

std::string read_private_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw CliError{kUsage, errno_message("cannot read", path)};
  struct stat st {};
  std::string text, problem;
  if (::fstat(fd.get(), &st) != 0) problem = errno_message("cannot stat", path);
  else problem = private_mode_problem(path, st.st_mode);
  char buf[8192];
  ssize_t n = 0;
  while (problem.empty() && ((n = ::read(fd.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)))
    if (n > 0) text.append(buf, static_cast<size_t>(n));
  if (problem.empty() && n < 0) problem = errno_message("cannot read", path);
  if (!problem.empty()) throw CliError{kUsage, problem};
  return text;
}

Config load_config(const std::string& dir) {
  if (dir.empty()) return {};
  std::string path = dir + "/config.yaml";
  if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return {};
  return parse_config(read_private_file(path), path);
}

std::string write_private_file(const std::string& dir, const std::string& name, const std::string& text) {
  ensure_private_dir(dir);
  std::string path = dir + "/" + name, tmp = path + ".tmp";
  // O_EXCL on a fresh temp name, mode 0600 from the start: never briefly readable by others.
  ::unlink(tmp.c_str());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) throw CliError{kFailure, errno_message("cannot write", tmp)};
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string msg = errno_message("cannot write", tmp);
      fd.reset();
      ::unlink(tmp.c_str());
      throw CliError{kFailure, msg};
    }
    off += static_cast<size_t>(n);
  }
  bool ok = ::fchmod(fd.get(), 0600) == 0 && ::fsync(fd.get()) == 0;
  fd.reset();
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string msg = errno_message("cannot write", path);
    ::unlink(tmp.c_str());
    throw CliError{kFailure, msg};
  }
  return path;
}

std::string load_token(const Target& t) {
  if (!t.token.empty() || t.token_file.empty()) return t.token;
  std::string text;
  if (t.token_from_config) {
    text = read_private_file(t.token_file);
  } else {  // --token-file / BULWARK_TOKEN_FILE: the user's own file, read as the other commands do
    std::ifstream in(t.token_file);
    if (!in) throw CliError{kUsage, "--token-file " + t.token_file + ": cannot read it"};
    std::getline(in, text);
  }
  std::string line = text.substr(0, text.find('\n'));
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  if (line.empty()) throw CliError{kUsage, t.token_file + " is empty: it should hold a token (bwk_...)"};
  return line;
}

void save_config(const std::string& dir, const Config& c) { write_private_file(dir, "config.yaml", dump_config(c)); }

}  // namespace bulwark::cli
