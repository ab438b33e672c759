// What every route handler of `blocklab serve` shares: JSON answers, the guard that turns an ApiError
// into its 4xx (and anything else into a 500, a bug), ids from the path, and the JSON body.
#pragma once

#include <functional>
#include <string>

#include "server/api_input.h"
#include "server/http.h"

namespace blocklab::server {

inline void send_json(http::Response& res, int status, const json& body) {
  res.status = status;
  res.content_type = "application/json";
  res.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
}

inline void send_error(http::Response& res, const ApiError& e) { send_json(res, e.status, e.body()); }

using Handler = std::function<void(const http::Request&, http::Response&)>;

// Every handler runs inside this: an ApiError becomes its 4xx; anything else is our bug, a 500.
inline Handler guarded(Handler h) {
  return [h = std::move(h)](const http::Request& req, http::Response& res) {
    try {
      h(req, res);
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const std::bad_alloc&) {
      send_error(res, ApiError(503, "out_of_memory", "the server ran out of memory for this request: expected a smaller one"));
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, "internal", std::string("internal error: ") + e.what()));
    }
  };
}

inline int64_t path_id(const http::Request& req, const char* what = "run") {
  const std::string s = req.matches.at(1);
  try {
    size_t used = 0;
    const long long v = std::stoll(s, &used);
    if (used == s.size() && v > 0) return v;
  } catch (const std::exception&) {
  }
  throw ApiError(400, "bad_request", "id: expected a positive integer " + std::string(what) + " id, got \"" + s.substr(0, 40) + "\"", "id");
}

// A body in memory, or 413 (the layer refuses larger Content-Lengths before reading; this is the
// same limit said again for bodies that reached a handler some other way).
inline json body_json(const http::Request& req, const Limits& L) {
  if (int64_t(req.body.size()) > L.max_body_bytes)
    throw ApiError(413, "too_large", "request body: expected at most " + std::to_string(L.max_body_bytes) + " bytes, got " +
                                         std::to_string(req.body.size()));
  return parse_body(req.body);
}

}  // namespace blocklab::server
