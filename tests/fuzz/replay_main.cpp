// Replays a libFuzzer harness over files, for ctest in the normal (gcc) and ASan builds: every
// argument is a file or a folder (its files, recursively, README* excepted), each file's bytes go
// once through LLVMFuzzerTestOneInput, each in a child process (fork) so that one crashing input does
// not hide the others. A harness signals a bug by crashing (a trap, a sanitizer report); every input
// that crashes is named at the end and the exit status is 1.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg = argv[i];
    if (fs::is_directory(arg)) {
      for (const auto& e : fs::recursive_directory_iterator(arg))
        if (e.is_regular_file() && e.path().filename().string().rfind("README", 0) != 0) files.push_back(e.path());
    } else if (fs::is_regular_file(arg)) {
      files.push_back(arg);
    } else {
      std::fprintf(stderr, "replay: %s: no such file or folder\n", argv[i]);
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  // The harness's one-time set-up (statics) runs here, once, on an empty input; the children inherit it.
  static const uint8_t none = 0;
  LLVMFuzzerTestOneInput(&none, 0);
  std::fflush(nullptr);
  std::vector<std::string> failed;
  for (const fs::path& p : files) {
    std::fprintf(stderr, "replaying %s\n", p.c_str());
    std::ifstream in(p, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // A heap copy of exactly the input's size, as libFuzzer passes it: ASan sees reads past the end.
    std::vector<uint8_t> copy(bytes.begin(), bytes.end());
    std::fflush(nullptr);
    const pid_t child = ::fork();
    if (child == 0) {
      LLVMFuzzerTestOneInput(copy.empty() ? &none : copy.data(), copy.size());
      std::fflush(nullptr);
      ::_exit(0);  // no static destructors: the parent's scratch folder stays
    }
    int status = 0;
    if (child < 0 || ::waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      const std::string how = child < 0 ? "fork failed"
                              : WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                                    : "exit status " + std::to_string(WEXITSTATUS(status));
      failed.push_back(p.string() + " (" + how + ")");
    }
  }
  std::printf("replayed %zu inputs, %zu failed\n", files.size(), failed.size());
  for (const std::string& f : failed) std::printf("FAILED %s\n", f.c_str());
  return failed.empty() ? 0 : 1;
}
