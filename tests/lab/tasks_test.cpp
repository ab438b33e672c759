// The built-in tasks: what each batch holds, and that a batch is a function of (seed, step).
#include "lab/tasks.h"

#include <gtest/gtest.h>

#include <algorithm>

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

TEST(Tasks, Names) {
  for (TaskKind k : {TaskKind::copy, TaskKind::reverse, TaskKind::sort, TaskKind::chars})
    EXPECT_EQ(parse_task(name_of(k)), k);
  EXPECT_FALSE(parse_task("translate"));
}

}  // namespace
}  // namespace blocklab::lab
