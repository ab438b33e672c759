// GPT-2's tokenizer, timed (docs/gpt2.md, "Speed"): a program, not a test.
//   build/tokenizer_benchmark DIR FILE [REPEATS]
// DIR: vocab.json + merges.txt or encoder.json + vocab.bpe; FILE: UTF-8 text. Prints the time to load the
// tokenizer, then for the whole file: the pre-tokenizer alone, encode on a fresh tokenizer (an empty cache) and
// encode again (a warm cache), each the fastest of REPEATS (default 3), in MB/s (10^6 bytes) and tokens/s.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "text/gpt2_tokenizer.h"

using namespace blocklab;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <typename F>
double fastest(int repeats, F&& f) {
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: tokenizer_benchmark DIR FILE [REPEATS]\n");
    return 2;
  }
  const int repeats = argc == 4 ? std::atoi(argv[3]) : 3;
  std::ifstream in(argv[2], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "tokenizer_benchmark: %s: cannot open\n", argv[2]);
    return 2;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const double mb = double(text.size()) / 1e6;

  auto t0 = std::chrono::steady_clock::now();
  Result<text::Gpt2Tokenizer> loaded = text::Gpt2Tokenizer::load(argv[1]);
  const double load_s = seconds_since(t0);
  if (!loaded) {
    std::fprintf(stderr, "tokenizer_benchmark: %s\n", loaded.status().message().c_str());
    return 2;
  }
  size_t pieces = 0, tokens = 0;
  const double pre_s = fastest(repeats, [&] {
    Result<std::vector<std::string_view>> p = text::gpt2_pretokenize(text);
    if (!p) {
      std::fprintf(stderr, "tokenizer_benchmark: %s\n", p.status().message().c_str());
      std::exit(2);
    }
    pieces = p->size();
  });
  // A fresh tokenizer per repeat, its load not timed: every piece is merged, none found in the cache.
  double cold_best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const text::Gpt2Tokenizer fresh = text::Gpt2Tokenizer::load(argv[1]).value();
    t0 = std::chrono::steady_clock::now();
    tokens = fresh.encode(text).value().size();
    cold_best = std::min(cold_best, seconds_since(t0));
  }
  const text::Gpt2Tokenizer& tok = loaded.value();
  tok.encode(text).value();  // fills the cache
  const double warm_s = fastest(repeats, [&] { tokens = tok.encode(text).value().size(); });

  std::printf("text: %s, %.2f MB, %zu pieces, %zu tokens (%.2f bytes per token)\n", argv[2], mb, pieces, tokens,
              double(text.size()) / double(tokens));
  std::printf("load %s: %.0f ms (%d tokens, %zu merges)\n", argv[1], load_s * 1e3, tok.vocab_size(), tok.merge_count());
  std::printf("pre-tokenize:         %7.3f s  %6.1f MB/s\n", pre_s, mb / pre_s);
  std::printf("encode, fresh:        %7.3f s  %6.1f MB/s  %5.2f M tokens/s\n", cold_best, mb / cold_best, double(tokens) / cold_best / 1e6);
  std::printf("encode, warm cache:   %7.3f s  %6.1f MB/s  %5.2f M tokens/s\n", warm_s, mb / warm_s, double(tokens) / warm_s / 1e6);
  return 0;
}
