// The run store, on both backends (SQLite and PostgreSQL): records, steps and layer norms; NaN; resume;
// migrations from an older schema; a store from a newer blocklab; a killed writer's run reads back as
// interrupted; two processes' writers at once.
#include "lab/run_store.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <algorithm>
#include <filesystem>
#include <mutex>
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
  std::mutex mu;
  std::vector<std::string> errors;
  for (int i = 0; i < 4; ++i)
    openers.emplace_back([&] {
      auto r = RunStore::open(db());
      if (r.is_ok()) {
        ++ok;
      } else {
        const std::lock_guard lock(mu);
        errors.push_back(r.status().message());
      }
    });
  for (auto& t : openers) t.join();
  EXPECT_EQ(ok.load(), 4);
  for (const std::string& e : errors) ADD_FAILURE() << e;
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
    // Nor when libpq quotes a URL it cannot read.
    auto bad = RunStore::open("postgresql://u:hunter2@[bad");
    ASSERT_FALSE(bad.is_ok());
    EXPECT_EQ(bad.status().message().find("hunter2"), std::string::npos) << bad.status().message();
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

// ---- the job queue (both backends) ----

RunRecord job_of(const std::string& owner) {
  RunRecord r = sample_run();
  r.kind = "job";
  r.status = "queued";
  r.owner = owner;
  return r;
}

// The tests' clock: leases are compared with the real time when runs are read back.
const double T = wall_clock_s();

std::string queued_event(int64_t id) { return "{\"status\":\"queued\",\"run_id\":" + std::to_string(id) + "}"; }

TEST_P(RunStoreTest, JobsAreAdmittedWithinTheirOwnersQuotaAndTheQueuesLength) {
  auto store = RunStore::open(db()).value();
  const double now = 1000;
  for (int i = 0; i < 2; ++i) {
    auto a = store->enqueue_job(job_of("user:ada"), 2, 3, now, queued_event).value();
    EXPECT_EQ(a.admission, RunStore::Admission::admitted);
    EXPECT_GT(a.run_id, 0);
    // Its first event is in the store with it.
    const auto events = store->events(a.run_id, 0).value();
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].event, "status");
    EXPECT_EQ(events[0].data, queued_event(a.run_id));
  }
  auto refused = store->enqueue_job(job_of("user:ada"), 2, 3, now, queued_event).value();
  EXPECT_EQ(refused.admission, RunStore::Admission::owner_full);
  EXPECT_EQ(refused.owner_active, 2);
  EXPECT_EQ(store->enqueue_job(job_of("user:bob"), 2, 3, now, queued_event).value().admission,
            RunStore::Admission::admitted);
  auto full = store->enqueue_job(job_of("user:cy"), 2, 3, now, queued_event).value();
  EXPECT_EQ(full.admission, RunStore::Admission::queue_full);
  EXPECT_EQ(full.queued, 3);
  EXPECT_EQ(store->count_jobs("queued").value(), 3);
}

TEST_P(RunStoreTest, ClaimsGoRoundRobinAcrossOwners) {
  auto store = RunStore::open(db()).value();
  // ada queues three, then bob one, then cy one.
  std::vector<int64_t> ada, bob, cy;
  for (int i = 0; i < 3; ++i) ada.push_back(store->enqueue_job(job_of("user:ada"), 0, 0, 1, queued_event).value().run_id);
  bob.push_back(store->enqueue_job(job_of("user:bob"), 0, 0, 2, queued_event).value().run_id);
  cy.push_back(store->enqueue_job(job_of("user:cy"), 0, 0, 3, queued_event).value().run_id);
  // The order the queue shows is the order of the claims.
  auto order = [&] {
    std::vector<int64_t> ids;
    for (const RunRecord& r : store->queue().value()) ids.push_back(r.id);
    return ids;
  };
  EXPECT_EQ(order(), (std::vector<int64_t>{ada[0], ada[1], ada[2], bob[0], cy[0]}));  // nobody served yet: oldest first
  std::vector<int64_t> claimed;
  for (int i = 0; i < 5; ++i) {
    auto c = store->claim_job("w1", ::getpid(), T + 10 + i, 30).value();
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(c->status, "running");
    EXPECT_EQ(c->lease_owner, "w1");
    EXPECT_EQ(c->attempts, 1);
    claimed.push_back(c->id);
  }
  // ada's first, then the owners with nothing running (bob, cy), then ada's others.
  EXPECT_EQ(claimed, (std::vector<int64_t>{ada[0], bob[0], cy[0], ada[1], ada[2]}));
  EXPECT_FALSE(store->claim_job("w1", ::getpid(), T + 20, 30).value().has_value());  // none left
}

TEST_P(RunStoreTest, ConcurrentClaimersNeverTakeOneJobTwice) {
  auto store = RunStore::open(db()).value();
  for (int i = 0; i < 24; ++i) (void)store->enqueue_job(job_of("user:u" + std::to_string(i % 5)), 0, 0, i, queued_event);
  std::mutex mu;
  std::vector<int64_t> taken;
  std::vector<std::thread> claimers;
  for (int t = 0; t < 4; ++t)
    claimers.emplace_back([&, t] {
      auto own = RunStore::open(db()).value();  // as another process would: its own connections
      for (;;) {
        auto c = own->claim_job("w" + std::to_string(t), ::getpid(), T + 100, 30);
        ASSERT_TRUE(c.is_ok()) << c.status().message();
        if (!c.value()) return;
        std::lock_guard lock(mu);
        taken.push_back(c.value()->id);
      }
    });
  for (auto& t : claimers) t.join();
  std::sort(taken.begin(), taken.end());
  EXPECT_EQ(taken.size(), 24u);
  EXPECT_EQ(std::adjacent_find(taken.begin(), taken.end()), taken.end());
}

TEST_P(RunStoreTest, ALostLeaseIsQueuedAgainAndItsHoldersWritesAreRefused) {
  auto store = RunStore::open(db()).value();
  const int64_t id = store->enqueue_job(job_of("user:ada"), 0, 0, 1, queued_event).value().run_id;
  auto c = store->claim_job("far-away:1:x", ::getpid(), T + 100, 30).value();
  ASSERT_TRUE(c.has_value());
  store->fence(id, "far-away:1:x");
  ASSERT_TRUE(store->append_step(id, {1, 1, 0, 0, 0, 0}, {}).is_ok());
  // Renewed, the lease holds; not renewed, it runs out and any process puts the job back.
  auto leases = store->renew_leases("far-away:1:x", T + 120, 30).value();
  EXPECT_EQ(leases.held, (std::vector<int64_t>{id}));
  EXPECT_TRUE(store->requeue_lost(T + 140).value().empty());
  EXPECT_EQ(store->requeue_lost(T + 151).value(), (std::vector<int64_t>{id}));
  EXPECT_EQ(store->get_run(id).value().status, "queued");
  // The old holder, waking up, can write nothing more.
  const Status late = store->append_step(id, {2, 1, 0, 0, 0, 0}, {});
  ASSERT_FALSE(late.is_ok());
  EXPECT_NE(late.message().find("lease on it was lost"), std::string::npos) << late.message();
  EXPECT_FALSE(store->finish_run(id, "finished", 1.0, 1.0, 1, 1).is_ok());
  EXPECT_EQ(store->steps(id).value().size(), 1u);
  EXPECT_TRUE(store->renew_leases("far-away:1:x", T + 152, 30).value().held.empty());
  store->unfence(id);
  // The next claimer has it, as a second attempt.
  auto again = store->claim_job("w2", ::getpid(), T + 160, 30).value();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->id, id);
  EXPECT_EQ(again->attempts, 2);
}

TEST_P(RunStoreTest, AJobOfADeadProcessOnThisHostIsQueuedAgainAtOnce) {
  auto store = RunStore::open(db()).value();
  const int64_t id = store->enqueue_job(job_of(""), 0, 0, 1, queued_event).value().run_id;
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  const std::string dead = host_name() + ":" + std::to_string(child) + ":dead";
  const double now = wall_clock_s();
  ASSERT_TRUE(store->claim_job(dead, child, now, 3600).value().has_value());
  EXPECT_EQ(store->get_run(id).value().status, "interrupted");  // as a reader sees it
  EXPECT_EQ(store->requeue_lost(now).value(), (std::vector<int64_t>{id}));
}

TEST_P(RunStoreTest, CancellingAQueuedJobEndsItAtOnceARunningOneIsAskedToStop) {
  auto store = RunStore::open(db()).value();
  const int64_t queued = store->enqueue_job(job_of("a"), 0, 0, 1, queued_event).value().run_id;
  const int64_t running = store->enqueue_job(job_of("b"), 0, 0, 2, queued_event).value().run_id;
  EXPECT_EQ(store->claim_job("w", ::getpid(), T + 10, 30).value()->id, queued);  // the oldest
  // Now `queued` runs, `running` waits: cancel each.
  EXPECT_EQ(store->request_cancel(running, "{\"status\":\"cancelled\"}").value(), "cancelled");
  EXPECT_EQ(store->get_run(running).value().status, "cancelled");
  const auto ev = store->events(running, 0).value();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[1].event, "end");
  EXPECT_FALSE(store->claim_job("w", ::getpid(), T + 11, 30).value().has_value());  // a cancelled job is not claimed
  EXPECT_EQ(store->request_cancel(queued, "{}").value(), "cancelling");
  EXPECT_EQ(store->renew_leases("w", T + 12, 30).value().cancel_requested, (std::vector<int64_t>{queued}));
  EXPECT_EQ(store->request_cancel(running, "{}").value(), "");  // already over
}

TEST_P(RunStoreTest, AReleasedJobGoesBackToTheQueueUnlessAUserCancelledIt) {
  auto store = RunStore::open(db()).value();
  const int64_t id = store->enqueue_job(job_of("a"), 0, 0, 1, queued_event).value().run_id;
  ASSERT_TRUE(store->claim_job("w", ::getpid(), T + 10, 30).value().has_value());
  store->fence(id, "w");
  ASSERT_TRUE(store->finish_run(id, "cancelled", std::nullopt, std::nullopt, 1, 1).is_ok());  // the trainer stopped
  store->unfence(id);
  ASSERT_TRUE(store->release_job(id, "w").is_ok());
  EXPECT_EQ(store->get_run(id).value().status, "queued");
  ASSERT_TRUE(store->claim_job("w", ::getpid(), T + 20, 30).value().has_value());
  ASSERT_EQ(store->request_cancel(id, "{}").value(), "cancelling");
  ASSERT_TRUE(store->release_job(id, "w").is_ok());
  EXPECT_EQ(store->get_run(id).value().status, "running");  // asked to cancel: it is not queued again
}

TEST_P(RunStoreTest, EventsKeepTheirOrderFromSeveralWriters) {
  auto store = RunStore::open(db()).value();
  const int64_t id = store->create_run(sample_run()).value();
  std::vector<std::thread> writers;
  for (int t = 0; t < 3; ++t)
    writers.emplace_back([&, t] {
      auto own = RunStore::open(db()).value();
      for (int i = 0; i < 10; ++i) ASSERT_TRUE(own->append_event(id, "step", std::to_string(t * 100 + i)).is_ok());
    });
  for (auto& t : writers) t.join();
  const auto all = store->events(id, 0).value();
  ASSERT_EQ(all.size(), 30u);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].seq, int64_t(i) + 1);
  EXPECT_EQ(store->events(id, 28).value().size(), 2u);
}

TEST_P(RunStoreTest, WorkersHeartbeats) {
  auto store = RunStore::open(db()).value();
  ASSERT_TRUE(store->heartbeat({"h:1:a", "h", "worker", 1, 2, 0, "2026-12-02T00:00:00Z", 100}).is_ok());
  ASSERT_TRUE(store->heartbeat({"h:1:a", "h", "worker", 1, 2, 1, "2026-12-02T00:00:00Z", 105}).is_ok());
  ASSERT_TRUE(store->heartbeat({"h:2:b", "h", "serve", 2, 1, 0, "2026-12-02T00:00:01Z", 90}).is_ok());
  auto w = store->workers().value();
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0].id, "h:1:a");
  EXPECT_EQ(w[0].running, 1);
  EXPECT_EQ(w[0].heartbeat_s, 105);
  EXPECT_EQ(w[1].kind, "serve");
  ASSERT_TRUE(store->remove_worker("h:1:a").is_ok());
  EXPECT_EQ(store->workers().value().size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Backends, RunStoreTest, ::testing::ValuesIn(testing::kBackends),
                         testing::backend_name);

}  // namespace
}  // namespace blocklab::lab
