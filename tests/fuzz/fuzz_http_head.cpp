// libFuzzer harness: a request head as a client sends it (server/http.h's parse_request_head, which the
// HTTP layer calls on every request before any route). Any bytes must give a refusal or a request;
// an accepted one has an upper-case method, a path starting with '/', and lower-case header names.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "fuzz_common.h"
#include "server/http.h"

using namespace blocklab;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string head(reinterpret_cast<const char*>(data), size);
  fuzz::guarded<fuzz::NoExceptionExpected>("fuzz_http_head", [&] {
    server::http::Request req;
    bool keep_alive = false;
    const auto refusal = server::http::parse_request_head(head, 100, &req, &keep_alive);
    if (refusal) {
      if (refusal->status != 400 && refusal->status != 431) __builtin_trap();
      return;
    }
    bool ok = !req.method.empty() && !req.path.empty() && req.path[0] == '/' && req.headers.size() <= 100;
    for (char c : req.method) ok = ok && c >= 'A' && c <= 'Z';
    for (const auto& [name, value] : req.headers)
      for (char c : name) ok = ok && !std::isupper(static_cast<unsigned char>(c)) && c != ':' && c != ' ';
    if (!ok) {
      std::fprintf(stderr, "fuzz_http_head: accepted a malformed head\n");
      __builtin_trap();
    }
    (void)server::http::percent_decode(req.target, true);
  });
  return 0;
}
