// The built-in tasks: what each batch holds, and that a batch is a function of (seed, step).
#include "lab/tasks.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace blocklab::lab {
namespace {

TEST(Tasks, CopyIsTheSeedsTask) {
  const Task t = Task::create(TaskKind::copy, 20).value();
  EXPECT_EQ(t.vocab_size(), 10);
  const Batch b = t.batch(0, 1, 32);
  ASSERT_EQ(b.tokens.size(), 32u * 20);
  EXPECT_EQ(b.tokens, b.targets);
  for (int32_t v : b.tokens) EXPECT_TRUE(v >= 0 && v <= 4);
  std::vector<int> seen(5);
  for (int32_t v : b.tokens) seen[size_t(v)]++;
  for (int c : seen) EXPECT_GT(c, 80);  // about 128 each
}

TEST(Tasks, ReverseAndSort) {
  const Batch r = Task::create(TaskKind::reverse, 7).value().batch(3, 2, 4);
  const Batch s = Task::create(TaskKind::sort, 7).value().batch(3, 2, 4);
  for (int64_t i = 0; i < 4; ++i) {
    std::vector<int32_t> in(r.tokens.begin() + i * 7, r.tokens.begin() + i * 7 + 7);
    std::vector<int32_t> out(r.targets.begin() + i * 7, r.targets.begin() + i * 7 + 7);
    std::reverse(in.begin(), in.end());
    EXPECT_EQ(in, out);
    std::vector<int32_t> sin(s.tokens.begin() + i * 7, s.tokens.begin() + i * 7 + 7);
    std::vector<int32_t> sout(s.targets.begin() + i * 7, s.targets.begin() + i * 7 + 7);
    std::sort(sin.begin(), sin.end());
    EXPECT_EQ(sin, sout);
  }
}

TEST(Tasks, CharsPredictsTheNextCharacter) {
  const Task t = Task::create(TaskKind::chars, 16).value();
  EXPECT_TRUE(t.needs_causal());
  EXPECT_GT(t.vocab_size(), 30);
  EXPECT_EQ(int64_t(t.alphabet().size()), t.vocab_size());
  const Batch b = t.batch(1, 1, 3);
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t p = 0; p + 1 < 16; ++p) EXPECT_EQ(b.targets[size_t(i * 16 + p)], b.tokens[size_t(i * 16 + p + 1)]);
  const std::string text = t.decode(std::vector<int32_t>(b.tokens.begin(), b.tokens.begin() + 16));
  EXPECT_NE(std::string(chars_text()).find(text), std::string::npos);
  EXPECT_EQ(t.decode(t.encode("Four score").value()), "Four score");
  EXPECT_FALSE(t.encode("caf\xc3\xa9").is_ok());
  EXPECT_FALSE(Task::create(TaskKind::chars, 100000).is_ok());
}

TEST(Tasks, BatchesAreAFunctionOfSeedAndStep) {
  const Task t = Task::create(TaskKind::sort, 10).value();
  EXPECT_EQ(t.batch(5, 7, 8).tokens, t.batch(5, 7, 8).tokens);
  EXPECT_NE(t.batch(5, 7, 8).tokens, t.batch(5, 8, 8).tokens);
  EXPECT_NE(t.batch(5, 7, 8).tokens, t.batch(6, 7, 8).tokens);
  EXPECT_NE(t.eval_batch(5, 7, 8).tokens, t.batch(5, 7, 8).tokens);  // held out from training
}

// The text task on a file whose token i is i % 1000 (ids in a .npy): a window's first id says where it
// starts, so every training window must lie in the first 90% and every held-out one in the last 10%.
TEST(Tasks, TextTrainsOnItsDataAndHoldsTheEndOut) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("blocklab_text_task_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const int64_t n = 1000;
  std::string header = "{'descr': '<i4', 'fortran_order': False, 'shape': (" + std::to_string(n) + ",), }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string bytes = std::string("\x93NUMPY\x01") + char(0) + char(header.size() & 0xff) + char(header.size() >> 8) + header;
  for (int64_t i = 0; i < n; ++i)
    for (int k = 0; k < 4; ++k) bytes += char((uint32_t(i) >> (8 * k)) & 0xff);
  const std::string path = (dir / "ids.npy").string();
  std::ofstream(path, std::ios::binary) << bytes;

  DataSpec data{path, 0.1, ""};
  const Result<Task> made = Task::create(TaskKind::text, 16, data);
  ASSERT_TRUE(made.is_ok()) << (made.is_ok() ? "" : made.status().message());
  const Task& t = made.value();
  EXPECT_TRUE(t.needs_causal());
  EXPECT_EQ(t.vocab_size(), n);
  EXPECT_EQ(t.train_tokens(), 900);
  EXPECT_EQ(t.held_out_tokens(), 100);
  EXPECT_TRUE(t.alphabet().empty());
  for (int64_t step = 1; step <= 50; ++step) {
    const Batch b = t.batch(3, step, 8);
    for (int64_t s = 0; s < 8; ++s) {
      const int32_t first = b.tokens[size_t(s * 16)];
      EXPECT_LE(first + 16, 899) << "a training window reads a held-out target";  // last target id < 900
      for (int64_t i = 0; i < 16; ++i) {
        EXPECT_EQ(b.tokens[size_t(s * 16 + i)], first + i);
        EXPECT_EQ(b.targets[size_t(s * 16 + i)], first + i + 1);
      }
    }
    const Batch e = t.eval_batch(3, step, 8);
    for (int64_t s = 0; s < 8; ++s) EXPECT_GE(e.tokens[size_t(s * 16)], 900);
  }
  EXPECT_EQ(t.batch(3, 7, 8).tokens, Task::create(TaskKind::text, 16, data)->batch(3, 7, 8).tokens);

  // A resumed run's hash must match the file's; parts too short for a window are refused.
  DataSpec stale = data;
  stale.hash = "0000000000000000";
  EXPECT_NE(Task::create(TaskKind::text, 16, stale).status().message().find("expected the file the run started with"),
            std::string::npos);
  EXPECT_NE(Task::create(TaskKind::text, 100, data).status().message().find("expected at least 101 tokens in each part"),
            std::string::npos);
  DataSpec too_much = data;
  too_much.held_out = 0.6;
  EXPECT_NE(Task::create(TaskKind::text, 16, too_much).status().message().find("(0, 0.5]"), std::string::npos);
  EXPECT_NE(Task::create(TaskKind::text, 16, DataSpec{}).status().message().find("expected --data FILE"), std::string::npos);
  fs::remove_all(dir);
}

TEST(Tasks, Names) {
  for (TaskKind k : {TaskKind::copy, TaskKind::reverse, TaskKind::sort, TaskKind::chars, TaskKind::text})
    EXPECT_EQ(parse_task(name_of(k)), k);
  EXPECT_FALSE(parse_task("translate"));
}

}  // namespace
}  // namespace blocklab::lab
