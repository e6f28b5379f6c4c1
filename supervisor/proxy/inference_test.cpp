#include "supervisor/proxy/inference.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

using namespace bulwark::proxy;

TEST_CASE("inference.local is recognised whatever its case, and nothing else is") {
  CHECK(is_inference_host("inference.local"));
  CHECK(is_inference_host("Inference.LOCAL"));
  CHECK_FALSE(is_inference_host("inference.local.evil.com"));
  CHECK_FALSE(is_inference_host("inference"));
  CHECK_FALSE(is_inference_host(""));
}

TEST_CASE("error bodies are valid JSON naming code and message, whatever the message holds") {
  auto j = nlohmann::json::parse(inference_error_body("payload_too_large", "limit 5 bytes \"quoted\" \xff"));
  CHECK(j["error"]["code"] == "payload_too_large");
  CHECK(j["error"]["message"].get<std::string>().find("limit 5 bytes \"quoted\"") == 0);
  std::string r = inference_error_response(413, "payload_too_large", "too big", true);
  CHECK(r.rfind("HTTP/1.1 413 Content Too Large\r\n", 0) == 0);
  CHECK(r.find("Content-Type: application/json\r\n") != std::string::npos);
  CHECK(r.find("Connection: close\r\n") != std::string::npos);
  std::string body = r.substr(r.find("\r\n\r\n") + 4);
  CHECK(r.find("Content-Length: " + std::to_string(body.size()) + "\r\n") != std::string::npos);
  CHECK(inference_error_response(502, "bad_gateway", "x", false).find("Connection:") == std::string::npos);
}

TEST_CASE("the handler gets the request's end-to-end headers only") {
  std::vector<HeaderField> in = {{"Host", "inference.local"},
                                 {"Authorization", "Bearer x"},
                                 {"Connection", "keep-alive, X-Hop"},
                                 {"X-Hop", "1"},
                                 {"Keep-Alive", "timeout=5"},
                                 {"Proxy-Authorization", "Basic y"},
                                 {"Content-Length", "12"},
                                 {"Transfer-Encoding", "chunked"},
                                 {"TE", "trailers"},
                                 {"Expect", "100-continue"},
                                 {"Content-Type", "application/json"}};
  auto out = inference_request_headers(in);
  REQUIRE(out.size() == 3);
  CHECK(out[0].name == "Host");
  CHECK(out[1].name == "Authorization");
  CHECK(out[2].name == "Content-Type");
}

TEST_CASE("response heads: the handler's framing is replaced by the proxy's; unsafe headers are dropped") {
  std::vector<HeaderField> h = {{"Content-Type", "text/event-stream"},
                                {"Content-Length", "99"},
                                {"Transfer-Encoding", "gzip, chunked"},
                                {"Connection", "close"},
                                {"X-Split", "a\r\nSet-Cookie: evil=1"},
                                {"Bad Name", "v"},
                                {"X-Request-Id", "abc"}};
  std::string head = inference_response_head(200, h, BodyMode::kChunked, false);
  CHECK(head == "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Request-Id: abc\r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
  CHECK(inference_response_head(204, {}, BodyMode::kNone, true) == "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
  CHECK(inference_response_head(200, {}, BodyMode::kClose, false) == "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
}

TEST_CASE("body modes: none for HEAD, 204, 304; close-delimited for HTTP/1.0; else chunked") {
  CHECK(inference_body_mode("HEAD", 1, 200) == BodyMode::kNone);
  CHECK(inference_body_mode("POST", 1, 204) == BodyMode::kNone);
  CHECK(inference_body_mode("GET", 1, 304) == BodyMode::kNone);
  CHECK(inference_body_mode("POST", 0, 200) == BodyMode::kClose);
  CHECK(inference_body_mode("POST", 1, 200) == BodyMode::kChunked);
  CHECK(inference_body_mode("POST", 1, 503) == BodyMode::kChunked);
}

TEST_CASE("chunks are framed in hex; an empty one is nothing (it would end the body)") {
  CHECK(chunk_frame("hello") == "5\r\nhello\r\n");
  CHECK(chunk_frame(std::string(26, 'x')) == "1a\r\n" + std::string(26, 'x') + "\r\n");
  CHECK(chunk_frame("").empty());
  CHECK(kLastChunk == "0\r\n\r\n");
}
