#include "services/gateway-api/http_api.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "bulwark/v1/common.pb.h"
#include "shared/error.h"
#include "shared/proto_json.h"

namespace bulwark::gateway {

namespace {
constexpr const char* kJson = "application/json";
constexpr size_t kMaxBody = 1 << 20;

void send_error(httplib::Response& res, const Error& e) {
  res.status = http_status(e.code());
  res.set_content(error_json(e.code(), e.what(), e.field()), kJson);
}

// Runs a route; every failure becomes a JSON error with the right status.
void guarded(httplib::Response& res, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    send_error(res, e);
  } catch (const std::exception& e) {
    spdlog::error("request failed: {}", e.what());
    send_error(res, Error(Code::kInternal, e.what()));
  }
}

void send(httplib::Response& res, int status, const google::protobuf::Message& m) {
  res.status = status;
  res.set_content(message_to_json(m), kJson);
}

bool flag(const httplib::Request& req, const char* name) {
  if (!req.has_param(name)) return false;
  auto v = req.get_param_value(name);
  if (v == "" || v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  throw Error(Code::kInvalidArgument, std::string(name) + ": must be true or false, got '" + v + "'", name);
}

size_t count_param(const httplib::Request& req, const char* name, size_t dflt, size_t max) {
  if (!req.has_param(name)) return dflt;
  auto v = req.get_param_value(name);
  try {
    size_t pos = 0;
    long long n = std::stoll(v, &pos);
    if (pos == v.size() && n > 0) return std::min(static_cast<size_t>(n), max);
  } catch (const std::exception&) {
  }
  throw Error(Code::kInvalidArgument, std::string(name) + ": must be a positive integer, got '" + v + "'", name);
}

// A --wait longer than this is a mistake (a CI job would hang), not a wish.
constexpr uint32_t kMaxWaitMs = 5 * 60 * 1000;  // policy-service's default --max-wait
void check_wait(uint32_t wait_ms) {
  if (wait_ms > kMaxWaitMs)
    throw Error(Code::kInvalidArgument, "wait_ms: at most " + std::to_string(kMaxWaitMs) + ", got " + std::to_string(wait_ms), "wait_ms");
}

void require_json(const httplib::Request& req) {
  auto ct = req.get_header_value("Content-Type");
  // curl -d sends form encoding by default; CI scripts rarely set the header, so take the body as
  // JSON then too. Any other declared type is a mistake worth naming.
  if (!ct.empty() && ct.find("json") == std::string::npos && ct != "application/x-www-form-urlencoded")
    throw Error(Code::kInvalidArgument, "Content-Type must be application/json, got '" + ct + "'", "Content-Type");
}
}  // namespace

std::string error_json(Code code, const std::string& message, const std::string& field) {
  v1::ErrorBody b;
  b.mutable_error()->set_code(code_name(code));
  b.mutable_error()->set_message(message);
  b.mutable_error()->set_field(field);
  return message_to_json(b);
}

void install_routes(httplib::Server& srv, Sandboxes& sandboxes, Providers& providers, InferenceRoutes& inference,
                    HealthInfo health) {
  srv.set_payload_max_length(kMaxBody);

  srv.Get("/healthz", [health](const httplib::Request&, httplib::Response& res) {
    bool nats = health.nats_connected();
    res.status = nats ? 200 : 503;
    res.set_content(std::string(R"({"status":")") + (nats ? "ok" : "degraded") + R"(","nats":")" +
                        (nats ? "connected" : "disconnected") + "\"}",
                    kJson);
  });

  srv.Post("/v1/sandboxes", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      require_json(req);
      v1::SandboxSpec spec;
      json_to_message(req.body.empty() ? "{}" : req.body, &spec);
      bool created = false;
      auto s = sandboxes.create(spec, req.get_header_value("Idempotency-Key"), &created);
      send(res, created ? 202 : 200, s);
    });
  });

  srv.Get("/v1/sandboxes", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      v1::ListSandboxesReply reply;
      for (auto& s : sandboxes.list(flag(req, "all"))) *reply.add_sandboxes() = std::move(s);
      send(res, 200, reply);
    });
  });

  srv.Get(R"(/v1/sandboxes/([^/]+))", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] { send(res, 200, sandboxes.get(req.matches[1])); });
  });

  srv.Delete(R"(/v1/sandboxes/([^/]+))", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      auto s = sandboxes.remove(req.matches[1]);
      send(res, s.phase() == v1::DELETED ? 200 : 202, s);
    });
  });

  srv.Get(R"(/v1/sandboxes/([^/]+)/logs)", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      v1::LogsReply reply;
      std::string stream = req.get_param_value("stream");
      if (!stream.empty() && stream != "stdout" && stream != "stderr" && stream != "bulwark" && stream != "denial" &&
          stream != "inference")
        throw Error(Code::kInvalidArgument,
                    "stream: must be stdout, stderr, bulwark, denial or inference, got '" + stream + "'", "stream");
      for (auto& l : sandboxes.logs(req.matches[1], count_param(req, "tail", 1000, 100000), stream))
        *reply.add_lines() = std::move(l);
      send(res, 200, reply);
    });
  });

  // Policies: relayed to policy-service, which versions them (docs/policy.md).
  srv.Put(R"(/v1/sandboxes/([^/]+)/policy)", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      require_json(req);
      v1::PolicySetRequest body;
      json_to_message(req.body.empty() ? "{}" : req.body, &body);
      check_wait(body.wait_ms());
      send(res, 200, sandboxes.policy_set(req.matches[1], std::move(body)));
    });
  });
  srv.Patch(R"(/v1/sandboxes/([^/]+)/policy)", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      require_json(req);
      v1::PolicyUpdateRequest body;
      json_to_message(req.body.empty() ? "{}" : req.body, &body);
      check_wait(body.wait_ms());
      send(res, 200, sandboxes.policy_update(req.matches[1], std::move(body)));
    });
  });
  srv.Get(R"(/v1/sandboxes/([^/]+)/policy)", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      uint64_t version = req.has_param("version") ? count_param(req, "version", 0, UINT32_MAX) : 0;
      send(res, 200, sandboxes.policy_get(req.matches[1], version));
    });
  });
  srv.Get(R"(/v1/sandboxes/([^/]+)/policy/versions)", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] { send(res, 200, sandboxes.policy_list(req.matches[1])); });
  });
  srv.Post("/v1/policies/validate", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      require_json(req);
      v1::PolicyValidateRequest body;
      json_to_message(req.body.empty() ? "{}" : req.body, &body);
      if (body.yaml().empty()) throw Error(Code::kInvalidArgument, "yaml: required (the policy YAML)", "yaml");
      send(res, 200, sandboxes.policy_validate(std::move(body)));
    });
  });

  // Providers: credentials go in, only masked values come out (docs/api.md).
  srv.Post("/v1/providers", [&providers](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      require_json(req);
      v1::Provider p;
      json_to_message(req.body.empty() ? "{}" : req.body, &p);
      send(res, 201, providers.create(std::move(p)));
    });
  });
  srv.Get("/v1/providers", [&providers](const httplib::Request&, httplib::Response& res) {
    guarded(res, [&] {
      v1::ProviderList reply;
      for (auto& p : providers.list()) *reply.add_providers() = std::move(p);
      send(res, 200, reply);
    });
  });
  srv.Get(R"(/v1/providers/([^/]+))", [&providers](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] { send(res, 200, providers.get(req.matches[1])); });
  });
  srv.Patch(R"(/v1/providers/([^/]+))", [&providers](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      require_json(req);
      const std::string body = req.body.empty() ? "{}" : req.body;
      v1::Provider patch;
      json_to_message(body, &patch);
      // proto3 cannot tell "base_url": "" (back to the type's default) from no base_url at all.
      auto j = nlohmann::json::parse(body);
      bool base_url_given = (j.contains("base_url") && !j["base_url"].is_null()) || (j.contains("baseUrl") && !j["baseUrl"].is_null());
      send(res, 200, providers.update(req.matches[1], patch, base_url_given));
    });
  });
  srv.Delete(R"(/v1/providers/([^/]+))", [&providers](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      providers.remove(req.matches[1]);
      res.status = 204;
    });
  });

  // Inference route tables: global, or one sandbox's with ?sandbox=<id or name>.
  srv.Put("/v1/inference", [&inference](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      require_json(req);
      v1::InferenceConfig c;
      json_to_message(req.body.empty() ? "{}" : req.body, &c);
      send(res, 200, inference.put(req.get_param_value("sandbox"), std::move(c)));
    });
  });
  srv.Get("/v1/inference", [&inference](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] { send(res, 200, inference.get(req.get_param_value("sandbox"))); });
  });
  srv.Delete("/v1/inference", [&inference](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      inference.remove(req.get_param_value("sandbox"));
      res.status = 204;
    });
  });

  // httplib answers unknown routes, oversize bodies and the like itself; give them JSON bodies too.
  srv.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    switch (res.status) {
      case 404:
        res.set_content(error_json(Code::kNotFound, "no route " + req.method + " " + req.path), kJson);
        break;
      case 413:
        res.set_content(error_json(Code::kPayloadTooLarge, "request body over " + std::to_string(kMaxBody) + " bytes"), kJson);
        break;
      default:
        res.set_content(error_json(res.status >= 500 ? Code::kInternal : Code::kInvalidArgument,
                                   "HTTP " + std::to_string(res.status) + " for " + req.method + " " + req.path),
                        kJson);
    }
  });
  srv.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    res.status = 500;
    res.set_content(error_json(Code::kInternal, what), kJson);
  });
}

}  // namespace bulwark::gateway
