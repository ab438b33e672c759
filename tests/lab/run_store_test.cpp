// The run store, on both backends (SQLite and PostgreSQL): records, steps and layer norms; NaN; resume;
// migrations from an older schema; a store from a newer blocklab; a killed writer's run reads back as
// interrupted; two processes' writers at once.
#include "lab/run_store.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <thread>

#include "test_postgres.h"

namespace blocklab::lab {
namespace {

namespace fs = std::filesystem;

class RunStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& c : name)
      if (c == '/') c = '_';
    dir_ = fs::temp_directory_path() / ("blocklab_store_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    db_ = GetParam() == "postgres" ? testing::fresh_postgres_database() : (dir_ / "runs.db").string();
    ASSERT_FALSE(db_.empty());
  }
  void TearDown() override { fs::remove_all(dir_); }
  const std::string& db() const { return db_; }
  bool sqlite() const { return GetParam() == "sqlite"; }
  // Sets the stored schema version, as a newer or older blocklab would have left it.
  void write_schema_version(int version) {
    auto d = Database::open(db()).value();
    ASSERT_TRUE(d->transaction([&](Connection& c) {
                   BLOCKLAB_RETURN_IF_ERROR(d->lock_schema(c));
                   return d->set_schema_version(c, version);
                 }).is_ok());
  }
  fs::path dir_;
  std::string db_;
};

RunRecord sample_run() {
  RunRecord r;
  r.task = "copy";
  r.label = "pre-LN";
  r.config_json = R"({"d_model":64})";
  r.options_json = R"({"steps":10})";
  r.seed = 7;
  r.steps_total = 10;
  r.pid = ::getpid();
  return r;
}

TEST_P(RunStoreTest, CreateAppendAndReadBack) {
  auto store = RunStore::open(db()).value();
  EXPECT_EQ(store->schema_version(), RunStore::kSchemaVersion);
  const int64_t id = store->create_run(sample_run()).value();
  for (int64_t s = 1; s <= 3; ++s) {
    std::vector<LayerGradNorm> layers;
    if (s == 2) layers = {{0, 1.5, 2.5}, {1, 0.5, 0.25}};
    ASSERT_TRUE(store->append_step(id, {s, 1.0 / double(s), 0.5, 1e-3, 2.0, 0.1 * double(s)}, layers).is_ok());
  }
  ASSERT_TRUE(store->set_checkpoint(id, "/tmp/ck.safetensors", 3).is_ok());
  ASSERT_TRUE(store->finish_run(id, "finished", 0.25, 0.99, 1.5, 1000).is_ok());
  const RunRecord r = store->get_run(id).value();
  EXPECT_EQ(r.status, "finished");
  EXPECT_EQ(r.steps_done, 3);
  EXPECT_EQ(r.label, "pre-LN");
  EXPECT_EQ(r.seed, 7u);
  EXPECT_EQ(*r.final_accuracy, 0.99);
  EXPECT_EQ(r.checkpoint_path, "/tmp/ck.safetensors");
  EXPECT_EQ(r.checkpoint_step, 3);
  const auto steps = store->steps(id).value();
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_DOUBLE_EQ(steps[1].loss, 0.5);
  const auto layers = store->layer_grad_norms(id).value();
  ASSERT_EQ(layers.size(), 1u);
  EXPECT_EQ(layers[0].step, 2);
  EXPECT_DOUBLE_EQ(layers[0].layers[1].grad_norm_resid, 0.25);
  EXPECT_EQ(store->list_runs().value().size(), 1u);
  EXPECT_EQ(store->integrity_check(), "ok");
  EXPECT_FALSE(store->get_run(99).is_ok());
}

TEST_P(RunStoreTest, NonFiniteValuesSurvive) {
  auto store = RunStore::open(db()).value();
  const int64_t id = store->create_run(sample_run()).value();
  ASSERT_TRUE(store->append_step(id, {1, NAN, 0.1, 1e-3, INFINITY, 0}, {}).is_ok());
  const auto steps = store->steps(id).value();
  EXPECT_TRUE(std::isnan(steps[0].loss));
  EXPECT_TRUE(std::isinf(steps[0].grad_norm));
}

TEST_P(RunStoreTest, ResumeForgetsStepsAfterTheCheckpoint) {
  auto store = RunStore::open(db()).value();
  const int64_t id = store->create_run(sample_run()).value();
  for (int64_t s = 1; s <= 5; ++s) ASSERT_TRUE(store->append_step(id, {s, 1, 1, 1, 1, 0}, {{0, 1, 1}}).is_ok());
  ASSERT_TRUE(store->resume_run(id, 3, 20, ::getpid()).is_ok());
  EXPECT_EQ(store->steps(id).value().size(), 3u);
  EXPECT_EQ(store->layer_grad_norms(id).value().size(), 3u);
  const RunRecord r = store->get_run(id).value();
  EXPECT_EQ(r.steps_done, 3);
  EXPECT_EQ(r.steps_total, 20);
  EXPECT_EQ(r.status, "running");
}

TEST_P(RunStoreTest, MigratesAnOlderSchemaKeepingItsRuns) {
  {
    auto v1 = RunStore::open_at_version(db(), 1).value();
    EXPECT_EQ(v1->schema_version(), 1);
    // A version-1 store, written as version 1 wrote it.
    auto d = v1->database();
    ASSERT_TRUE(d->query("INSERT INTO runs (created_at, updated_at, kind, task, config_json, options_json, seed, "
                         "status, steps_total, steps_done) VALUES ('2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', "
                         "'train', 'copy', '{}', '{}', 3, 'finished', 2, 2)")
                    .is_ok());
    ASSERT_TRUE(d->query("INSERT INTO steps (run_id, step, loss, accuracy, lr, grad_norm, wall_s) VALUES "
                         "(1, 1, 2.0, 0.2, 0.001, 1.0, 0.1), (1, 2, 1.0, 0.5, 0.001, 1.0, 0.2)")
                    .is_ok());
  }
  auto store = RunStore::open(db()).value();
  EXPECT_EQ(store->schema_version(), RunStore::kSchemaVersion);
  const RunRecord r = store->get_run(1).value();
  EXPECT_EQ(r.task, "copy");
  EXPECT_EQ(r.experiment, "");  // the column version 2 added
  EXPECT_EQ(r.user_id, 0);      // the column version 3 added
  EXPECT_EQ(store->steps(1).value().size(), 2u);
  EXPECT_TRUE(store->layer_grad_norms(1).value().empty());
  EXPECT_EQ(store->integrity_check(), "ok");
  // The tables of versions 3 and 4 are there.
  EXPECT_TRUE(store->database()->query("SELECT count(*) FROM comments").is_ok());
  EXPECT_TRUE(store->database()->query("SELECT count(*) FROM signin_failures").is_ok());
}

TEST_P(RunStoreTest, RefusesAStoreFromANewerBlocklab) {
  { auto s = RunStore::open(db()).value(); }
  write_schema_version(99);
  auto r = RunStore::open(db());
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("schema version 99 is newer than this blocklab's (" + std::to_string(RunStore::kSchemaVersion) + ")"), std::string::npos);
}

TEST_P(RunStoreTest, ManyOpenersAtOnceMigrateOnce) {
  std::vector<std::thread> openers;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i)
    openers.emplace_back([&] {
      if (RunStore::open(db()).is_ok()) ++ok;
    });
  for (auto& t : openers) t.join();
  EXPECT_EQ(ok.load(), 4);
  EXPECT_EQ(RunStore::open(db()).value()->schema_version(), RunStore::kSchemaVersion);
}

TEST_P(RunStoreTest, WritersFromSeveralThreadsLoseNothing) {
  auto store = RunStore::open(db()).value();
  std::vector<int64_t> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(store->create_run(sample_run()).value());
  std::vector<std::thread> writers;
  for (int64_t id : ids)
    writers.emplace_back([&, id] {
      for (int64_t s = 1; s <= 25; ++s) ASSERT_TRUE(store->append_step(id, {s, 1.0 / double(s), 0, 0, 0, 0}, {{0, 1, 2}}).is_ok());
    });
  for (auto& t : writers) t.join();
  for (int64_t id : ids) {
    EXPECT_EQ(store->steps(id).value().size(), 25u);
    EXPECT_EQ(store->get_run(id).value().steps_done, 25);
  }
}

TEST_P(RunStoreTest, NotADatabase) {
  if (!sqlite()) {  // a PostgreSQL URL that names no server: the message names the URL
    auto r = RunStore::open("postgresql:///nothing?host=/nonexistent-blocklab&user=nobody&password=hunter2");
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("postgresql:///nothing"), std::string::npos) << r.status().message();
    EXPECT_EQ(r.status().message().find("hunter2"), std::string::npos) << "the password is not shown";
    return;
  }
  { std::FILE* f = std::fopen(db().c_str(), "w"); std::fputs("this is not sqlite, it is a long enough text file", f); std::fclose(f); }
  auto r = RunStore::open(db());
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("runs.db"), std::string::npos);
}

TEST_P(RunStoreTest, ARunWhoseProcessIsGoneReadsAsInterrupted) {
  auto store = RunStore::open(db()).value();
  RunRecord run = sample_run();
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  run.pid = child;  // a process that no longer exists
  const int64_t id = store->create_run(run).value();
  EXPECT_EQ(store->get_run(id).value().status, "interrupted");
  run.pid = ::getpid();
  EXPECT_EQ(store->get_run(store->create_run(run).value()).value().status, "running");
}

INSTANTIATE_TEST_SUITE_P(Backends, RunStoreTest, ::testing::ValuesIn(testing::kBackends),
                         testing::backend_name);

}  // namespace
}  // namespace blocklab::lab
