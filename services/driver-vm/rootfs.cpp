#include "services/driver-vm/rootfs.h"

#include <httplib.h>
#include <sys/socket.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "shared/error.h"
#include "shared/process.h"
#include "shared/util.h"

namespace bulwark::vm {

namespace fs = std::filesystem;

namespace {
// Podman's compat API and dockerd both answer this version.
constexpr const char* kApi = "/v1.40";


std::unique_ptr<httplib::Client> client(const std::string& socket, int read_timeout_s) {
  auto c = std::make_unique<httplib::Client>(socket);
  c->set_address_family(AF_UNIX);
  c->set_default_headers({{"Host", "engine"}});
  c->set_connection_timeout(5);
  c->set_read_timeout(read_timeout_s);
  c->set_write_timeout(60);
  c->set_tcp_nodelay(true);
  return c;
}

std::string engine_message(const httplib::Result& r) {
  try {
    auto j = nlohmann::json::parse(r->body);
    if (j.is_object() && j.contains("message") && j["message"].is_string()) return j["message"].get<std::string>();
  } catch (const std::exception&) {
  }
  return "HTTP " + std::to_string(r->status) + " " + r->body.substr(0, 200);
}
}  // namespace

ImageSource::ImageSource(std::string socket, std::string engine) : socket_(std::move(socket)), engine_(std::move(engine)) {}

namespace {
Error unreachable(const std::string& engine, const std::string& socket, const httplib::Result& r) {
  std::string how = engine == "docker" ? "start dockerd (`dockerd -H unix://" + socket + " &`)"
                                       : "start `podman system service --time=0 unix://" + socket + "`";
  return Error(Code::kUnavailable,
               "the " + engine + " API at " + socket + " did not answer (" + httplib::to_string(r.error()) +
                   "): driver-vm takes sandbox images from it; " + how + ", or set --image-socket",
               "image");
}
}  // namespace

ImageInfo ImageSource::inspect(const std::string& image) {
  auto c = client(socket_, 30);
  auto r = c->Get(std::string(kApi) + "/images/" + url_path_escape(image) + "/json");
  if (!r) throw unreachable(engine_, socket_, r);
  if (r->status == 404)
    throw Error(Code::kFailedPrecondition,
                "image '" + image + "' is not in " + engine_ + "'s store at " + socket_ +
                    " (driver-vm boots the image's root filesystem): import or build it there first, e.g. "
                    "scripts/build-base-image for localhost/bulwark/base:latest",
                "image");
  if (r->status != 200) throw Error(Code::kInternal, "inspecting image '" + image + "': " + engine_message(r), "image");
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  ImageInfo info;
  info.id = j.value("Id", "");
  if (info.id.empty()) throw Error(Code::kInternal, "the " + engine_ + " API gave image '" + image + "' no Id", "image");
  if (j.contains("Config") && j["Config"].is_object() && j["Config"].contains("Env") && j["Config"]["Env"].is_array())
    for (const auto& e : j["Config"]["Env"])
      if (e.is_string()) info.env.push_back(e.get<std::string>());
  return info;
}

void ImageSource::export_rootfs(const std::string& image, const std::string& tar_path) {
  auto c = client(socket_, 300);
  nlohmann::json body = {{"Image", image}, {"Cmd", {"/bin/true"}}, {"Labels", {{"io.bulwark.managed", "true"}}}};
  auto r = c->Post(std::string(kApi) + "/containers/create", body.dump(), "application/json");
  if (!r) throw unreachable(engine_, socket_, r);
  if (r->status != 201 && r->status != 200)
    throw Error(Code::kInternal, "creating a container of '" + image + "' to export it: " + engine_message(r), "image");
  std::string id = nlohmann::json::parse(r->body, nullptr, false).value("Id", "");
  if (id.empty()) throw Error(Code::kInternal, "the " + engine_ + " API answered a create without an Id", "image");
  // The throwaway container goes whatever happens below.
  struct Remove {
    httplib::Client& c;
    std::string id;
    ~Remove() { c.Delete(std::string(kApi) + "/containers/" + id + "?force=1&v=1"); }
  } remove{*c, id};
  std::ofstream out(tar_path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(Code::kInternal, errno_text("open(" + tar_path + ")", errno));
  int status = 0;
  std::string error_body;
  auto e = c->Get(
      std::string(kApi) + "/containers/" + id + "/export",
      [&](const httplib::Response& resp) {
        status = resp.status;
        return true;
      },
      [&](const char* data, size_t n) {
        if (status != 200) {
          error_body.append(data, std::min<size_t>(n, 400));
          return true;
        }
        out.write(data, static_cast<std::streamsize>(n));
        return static_cast<bool>(out);
      });
  if (!e) throw unreachable(engine_, socket_, e);
  if (status != 200) throw Error(Code::kInternal, "exporting '" + image + "': HTTP " + std::to_string(status) + " " + error_body, "image");
  if (!out.flush()) throw Error(Code::kInternal, errno_text("write(" + tar_path + ")", errno));
}

uint64_t ext4_size(uint64_t content_bytes, uint64_t headroom) {
  uint64_t size = content_bytes + content_bytes / 4 + headroom + (16ull << 20);
  return (size + (1ull << 20) - 1) & ~((1ull << 20) - 1);  // whole MiB
}

void run_tool(const std::vector<std::string>& argv, const std::string& what_to_install) {
  TempDir tmp("bulwark-vm-tool");
  Process p;
  try {
    p = Process::spawn({.argv = argv, .output_file = tmp.file("out")});
  } catch (const Error& e) {
    throw Error(Code::kFailedPrecondition, std::string(e.what()) + " (" + what_to_install + ")");
  }
  int code = p.wait();
  if (code != 0) {
    std::ifstream f(tmp.file("out"));
    std::string out((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (out.size() > 2000) out = out.substr(out.size() - 2000);
    throw Error(Code::kInternal, argv[0] + " exited " + std::to_string(code) + ": " + out);
  }
}

RootfsCache::RootfsCache(std::string dir, ImageSource& source, uint64_t headroom)
    : dir_(std::move(dir)), source_(source), headroom_(headroom) {
  fs::create_directories(dir_);
}

std::string RootfsCache::ensure(const ImageInfo& image, const std::string& image_name) {
  std::string key = image.id.substr(image.id.find(':') == std::string::npos ? 0 : image.id.find(':') + 1);
  std::string path = dir_ + "/" + key + ".ext4";
  std::shared_ptr<std::mutex> m;
  {
    std::lock_guard lock(mu_);
    auto& slot = building_[key];
    if (!slot) slot = std::make_shared<std::mutex>();
    m = slot;
  }
  std::lock_guard build(*m);
  if (fs::exists(path)) return path;
  auto t0 = std::chrono::steady_clock::now();
  TempDir work("bulwark-vm-rootfs", dir_);
  std::string tar = work.file("rootfs.tar"), root = work.file("root");
  source_.export_rootfs(image_name, tar);
  fs::create_directories(root);
  run_tool({"tar", "-x", "--numeric-owner", "-f", tar, "-C", root}, "apt-get install -y tar");
  fs::remove(tar);
  // Mount points the guest's init fills (bundle share, its own tmpfs) and the usual API dirs.
  for (const char* d : {".bulwark", ".bulwark-vm", "proc", "sys", "dev", "tmp", "run"}) fs::create_directories(root + "/" + d);
  fs::permissions(root + "/tmp", fs::perms::all | fs::perms::sticky_bit);
  uint64_t content = 0;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    std::error_code ec;
    if (it->is_regular_file(ec) && !it->is_symlink(ec)) content += it->file_size(ec);
  }
  std::string tmp_img = path + ".tmp";
  run_tool({"mkfs.ext4", "-q", "-F", "-L", "bulwark-root", "-d", root, "-E", "root_owner=0:0", tmp_img,
            std::to_string(ext4_size(content, headroom_) >> 10) + "k"},
           "apt-get install -y e2fsprogs");
  fs::rename(tmp_img, path);
  spdlog::info("image {} ({}) is now {} ({} MiB of files, {:.1f} s)", image_name, image.id, path, content >> 20,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return path;
}

}  // namespace bulwark::vm
