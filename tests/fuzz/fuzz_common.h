// Shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.cpp) and their ctest replay (replay_main.cpp).
// A harness calls the code under test inside `guarded`: an exception the code is not documented to
// throw is a bug, reported on stderr and turned into a crash (__builtin_trap) so that libFuzzer keeps
// the input and the replay test fails.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <system_error>

#include "engine/blas.h"

namespace blocklab::fuzz {

// One scratch folder per process (files some code paths need: checkpoints, uploads), removed at exit.
// One thread: the inputs are tiny, and libFuzzer's speed and reproducibility want no thread pool.
class Scratch {
 public:
  Scratch() {
    set_blas_threads(1);
    std::error_code ec;
    std::filesystem::path base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path(ec);
    dir_ = base / ("blocklab_fuzz_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_, ec);
    std::filesystem::create_directories(dir_, ec);
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
};

[[noreturn]] inline void unexpected(const char* harness, const char* what) {
  std::fprintf(stderr, "%s: unexpected exception escaped: %s\n", harness, what);
  std::fflush(stderr);
  __builtin_trap();
}

// Runs `f`; exceptions derived from `Expected` are outcomes, anything else traps.
template <typename Expected, typename F>
void guarded(const char* harness, F&& f) {
  try {
    f();
  } catch (const Expected&) {
  } catch (const std::exception& e) {
    unexpected(harness, e.what());
  } catch (...) {
    unexpected(harness, "(not a std::exception)");
  }
}

struct NoExceptionExpected {};  // nothing derives from it: every exception is a bug

}  // namespace blocklab::fuzz
