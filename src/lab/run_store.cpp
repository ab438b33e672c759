#include "lab/run_store.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

namespace blocklab::lab {

namespace {

// The schema, one migration per version: migration i takes version i to i + 1. Written once for both
// backends; Database::schema_sql expands {id}, {int}, {real} and {without_rowid} per dialect.
const char* const kMigrations[] = {
    // 0 -> 1: runs and their per-step metrics.
    R"sql(
CREATE TABLE runs (
  id {id},
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  kind TEXT NOT NULL,
  task TEXT NOT NULL,
  label TEXT NOT NULL DEFAULT '',
  config_json TEXT NOT NULL,
  options_json TEXT NOT NULL,
  seed {int} NOT NULL,
  status TEXT NOT NULL,
  steps_done {int} NOT NULL DEFAULT 0,
  steps_total {int} NOT NULL,
  final_loss {real},
  final_accuracy {real},
  wall_s {real} NOT NULL DEFAULT 0,
  tokens_per_s {real} NOT NULL DEFAULT 0,
  checkpoint_path TEXT NOT NULL DEFAULT '',
  checkpoint_step {int} NOT NULL DEFAULT 0,
  pid {int} NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE steps (
  run_id {int} NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step {int} NOT NULL,
  loss {real},
  accuracy {real},
  lr {real},
  grad_norm {real},
  wall_s {real},
  PRIMARY KEY (run_id, step)
){without_rowid};
)sql",
    // 1 -> 2: experiments name their runs; per-layer gradient norms every k steps.
    R"sql(
ALTER TABLE runs ADD COLUMN experiment TEXT NOT NULL DEFAULT '';
CREATE TABLE layer_grad_norms (
  run_id {int} NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step {int} NOT NULL,
  layer {int} NOT NULL,
  grad_norm_params {real},
  grad_norm_resid {real},
  PRIMARY KEY (run_id, step, layer)
){without_rowid};
)sql",
    // 2 -> 3: accounts, their sessions, class codes, comments on the web app's sections, and the log of
    // every moderation action; runs may belong to an account (null: the CLI's, or anonymous).
    R"sql(
CREATE TABLE users (
  id {id},
  name TEXT NOT NULL,
  name_key TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('student', 'teacher')),
  blocked {int} NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);
CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,
  user_id {int} NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  created_s {real} NOT NULL,
  last_seen_s {real} NOT NULL
){without_rowid};
CREATE INDEX sessions_user ON sessions(user_id);
CREATE TABLE class_codes (
  code_hash TEXT PRIMARY KEY,
  created_by {int} REFERENCES users(id) ON DELETE SET NULL,
  created_at TEXT NOT NULL,
  expires_s {real} NOT NULL
){without_rowid};
CREATE TABLE comments (
  id {id},
  section TEXT NOT NULL,
  user_id {int} NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  body TEXT NOT NULL,
  html TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_s {real} NOT NULL,
  hidden {int} NOT NULL DEFAULT 0
);
CREATE INDEX comments_section ON comments(section, id);
CREATE INDEX comments_user_time ON comments(user_id, created_s);
CREATE TABLE moderation_log (
  id {id},
  at TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT ''
);
ALTER TABLE runs ADD COLUMN user_id {int} REFERENCES users(id) ON DELETE SET NULL;
)sql",
    // 3 -> 4: sign-in failures, counted in the store so that every server process on it throttles alike.
    // key: "p:" account "\n" address (one account from one address), or "a:" address (any account).
    R"sql(
CREATE TABLE signin_failures (
  key TEXT PRIMARY KEY,
  failures {int} NOT NULL,
  last_s {real} NOT NULL
){without_rowid};
CREATE INDEX signin_failures_last ON signin_failures(last_s);
)sql",
};
static_assert(sizeof kMigrations / sizeof kMigrations[0] == RunStore::kSchemaVersion);

bool process_alive(int64_t pid) {
  if (pid <= 0) return false;
  return ::kill(pid_t(pid), 0) == 0 || errno == EPERM;
}

constexpr const char* kRunColumns =
    "id, created_at, updated_at, kind, task, experiment, label, config_json, options_json, seed, status, steps_done, "
    "steps_total, final_loss, final_accuracy, wall_s, tokens_per_s, checkpoint_path, checkpoint_step, pid, error, "
    "user_id";

RunRecord read_run(const Row& s) {
  RunRecord r;
  r.id = s.integer(0);
  r.created_at = s.text(1);
  r.updated_at = s.text(2);
  r.kind = s.text(3);
  r.task = s.text(4);
  r.experiment = s.text(5);
  r.label = s.text(6);
  r.config_json = s.text(7);
  r.options_json = s.text(8);
  r.seed = uint64_t(s.integer(9));
  r.status = s.text(10);
  r.steps_done = s.integer(11);
  r.steps_total = s.integer(12);
  r.final_loss = s.optional_real(13);
  r.final_accuracy = s.optional_real(14);
  r.wall_s = s.real(15);
  r.tokens_per_s = s.real(16);
  r.checkpoint_path = s.text(17);
  r.checkpoint_step = s.integer(18);
  r.pid = s.integer(19);
  r.error = s.text(20);
  r.user_id = s.integer(21);  // NULL reads as 0
  if (r.status == "running" && r.pid != int64_t(::getpid()) && !process_alive(r.pid)) r.status = "interrupted";
  return r;
}

}  // namespace

bool RunRecord::held_by_another_process() const {
  return pid > 0 && pid != int64_t(::getpid()) && process_alive(pid);
}

Result<std::unique_ptr<RunStore>> RunStore::open(const std::string& where) {
  Result<std::shared_ptr<Database>> db = Database::open(where);
  if (!db) return db.status();
  return open_impl(std::move(db.value()), kSchemaVersion);
}

Result<std::unique_ptr<RunStore>> RunStore::open(std::shared_ptr<Database> db) {
  return open_impl(std::move(db), kSchemaVersion);
}

Result<std::unique_ptr<RunStore>> RunStore::open_at_version(const std::string& where, int version) {
  Result<std::shared_ptr<Database>> db = Database::open(where);
  if (!db) return db.status();
  return open_impl(std::move(db.value()), version);
}

Result<std::unique_ptr<RunStore>> RunStore::open_impl(std::shared_ptr<Database> db, int target_version) {
  std::unique_ptr<RunStore> store(new RunStore(std::move(db)));
  BLOCKLAB_RETURN_IF_ERROR(store->migrate(target_version));
  return store;
}

int RunStore::schema_version() {
  int version = -1;
  (void)db_->with_connection([&](Connection& c) {
    Result<int> v = db_->schema_version(c);
    if (v) version = v.value();
    return v.status();
  });
  return version;
}

std::string RunStore::integrity_check() { return db_->integrity_check(); }

Status RunStore::migrate(int target_version) {
  const std::string& name = db_->name();
  Result<int> version = Status::error("unread");
  BLOCKLAB_RETURN_IF_ERROR(db_->with_connection([&](Connection& c) {
    version = db_->schema_version(c);
    return version.status();
  }).with_context(name + ": not a usable store"));
  if (version.value() > kSchemaVersion)
    return Status::error(name + ": run store schema version " + std::to_string(version.value()) +
                         " is newer than this blocklab's (" + std::to_string(kSchemaVersion) + ")");
  for (int v = version.value(); v < target_version; ++v) {
    Status st = db_->transaction([&](Connection& c) -> Status {
      BLOCKLAB_RETURN_IF_ERROR(db_->lock_schema(c));
      // Another process may have migrated while we waited for the lock.
      Result<int> now = db_->schema_version(c);
      if (!now) return now.status();
      if (now.value() > v) return Status::ok();
      BLOCKLAB_RETURN_IF_ERROR(c.exec_script(db_->schema_sql(kMigrations[v])));
      return db_->set_schema_version(c, v + 1);
    });
    if (!st) return Status::error("migrating the run store to version " + std::to_string(v + 1) + ": " + st.message());
  }
  return Status::ok();
}

Result<int64_t> RunStore::create_run(const RunRecord& r) {
  const std::string now = now_utc();
  Result<Rows> rows = db_->query(
      "INSERT INTO runs (created_at, updated_at, kind, task, experiment, label, config_json, options_json, seed, "
      "status, steps_done, steps_total, checkpoint_path, pid, user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
      "RETURNING id",
      {now, now, r.kind, r.task, r.experiment, r.label, r.config_json, r.options_json, int64_t(r.seed), r.status,
       r.steps_done, r.steps_total, r.checkpoint_path, r.pid, nullable_id(r.user_id)});
  if (!rows) return rows.status().with_context("create run");
  if (rows->empty()) return Status::error(db_->name() + ": create run: no id came back");
  return rows.value()[0].integer(0);
}

Status RunStore::append_step(int64_t run_id, const StepRecord& st, const std::vector<LayerGradNorm>& layers) {
  return db_->transaction([&](Connection& c) -> Status {
    BLOCKLAB_RETURN_IF_ERROR(
        c.query("INSERT INTO steps (run_id, step, loss, accuracy, lr, grad_norm, wall_s) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, step) DO UPDATE SET loss = excluded.loss, accuracy = excluded.accuracy, "
                "lr = excluded.lr, grad_norm = excluded.grad_norm, wall_s = excluded.wall_s",
                {run_id, st.step, st.loss, st.accuracy, st.lr, st.grad_norm, st.wall_s})
            .status()
            .with_context("append step"));
    for (const LayerGradNorm& l : layers)
      BLOCKLAB_RETURN_IF_ERROR(
          c.query("INSERT INTO layer_grad_norms (run_id, step, layer, grad_norm_params, grad_norm_resid) "
                  "VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, step, layer) DO UPDATE SET "
                  "grad_norm_params = excluded.grad_norm_params, grad_norm_resid = excluded.grad_norm_resid",
                  {run_id, st.step, l.layer, l.grad_norm_params, l.grad_norm_resid})
              .status()
              .with_context("append layer norms"));
    return c.query("UPDATE runs SET steps_done = ?, wall_s = ?, updated_at = ? WHERE id = ?",
                   {st.step, st.wall_s, now_utc(), run_id})
        .status()
        .with_context("update run");
  });
}

Status RunStore::resume_run(int64_t run_id, int64_t from_step, int64_t steps_total, int64_t pid) {
  return db_->transaction([&](Connection& c) -> Status {
    BLOCKLAB_RETURN_IF_ERROR(c.query("DELETE FROM steps WHERE run_id = ? AND step > ?", {run_id, from_step}).status());
    BLOCKLAB_RETURN_IF_ERROR(
        c.query("DELETE FROM layer_grad_norms WHERE run_id = ? AND step > ?", {run_id, from_step}).status());
    return c.query("UPDATE runs SET status = 'running', steps_done = ?, steps_total = ?, pid = ?, error = '', "
                   "final_loss = NULL, final_accuracy = NULL, updated_at = ? WHERE id = ?",
                   {from_step, steps_total, pid, now_utc(), run_id})
        .status()
        .with_context("resume run");
  });
}

Status RunStore::set_checkpoint(int64_t run_id, const std::string& path, int64_t step) {
  return db_->query("UPDATE runs SET checkpoint_path = ?, checkpoint_step = ?, updated_at = ? WHERE id = ?",
                    {path, step, now_utc(), run_id})
      .status()
      .with_context("set checkpoint");
}

Status RunStore::finish_run(int64_t run_id, const std::string& status, std::optional<double> final_loss,
                            std::optional<double> final_accuracy, double wall_s, double tokens_per_s,
                            const std::string& error) {
  return db_->query("UPDATE runs SET status = ?, final_loss = ?, final_accuracy = ?, wall_s = ?, tokens_per_s = ?, "
                    "error = ?, updated_at = ? WHERE id = ?",
                    {status, nullable(final_loss), nullable(final_accuracy), wall_s, tokens_per_s, error, now_utc(),
                     run_id})
      .status()
      .with_context("finish run");
}

Result<std::vector<RunRecord>> RunStore::select_runs(const std::string& where, const std::vector<Value>& params) {
  Result<Rows> rows = db_->query(std::string("SELECT ") + kRunColumns + " FROM runs " + where + " ORDER BY id", params);
  if (!rows) return rows.status().with_context("list runs");
  std::vector<RunRecord> out;
  out.reserve(rows->size());
  for (const Row& row : rows.value()) out.push_back(read_run(row));
  return out;
}

Result<std::vector<RunRecord>> RunStore::list_runs() { return select_runs("", {}); }

Result<std::vector<RunRecord>> RunStore::list_runs_of(int64_t user_id) {
  return select_runs("WHERE user_id = ?", {user_id});
}

Result<RunRecord> RunStore::get_run(int64_t id) {
  Result<std::vector<RunRecord>> runs = select_runs("WHERE id = ?", {id});
  if (!runs) return runs.status();
  if (runs->empty()) return Status::error("run " + std::to_string(id) + ": no such run in " + db_->name());
  return runs.value()[0];
}

Result<std::vector<StepRecord>> RunStore::steps(int64_t run_id) {
  Result<Rows> rows =
      db_->query("SELECT step, loss, accuracy, lr, grad_norm, wall_s FROM steps WHERE run_id = ? ORDER BY step", {run_id});
  if (!rows) return rows.status().with_context("read steps");
  std::vector<StepRecord> out;
  out.reserve(rows->size());
  for (const Row& s : rows.value()) out.push_back({s.integer(0), s.real(1), s.real(2), s.real(3), s.real(4), s.real(5)});
  return out;
}

Result<std::vector<RunStore::StepLayers>> RunStore::layer_grad_norms(int64_t run_id) {
  Result<Rows> rows = db_->query(
      "SELECT step, layer, grad_norm_params, grad_norm_resid FROM layer_grad_norms WHERE run_id = ? ORDER BY step, layer",
      {run_id});
  if (!rows) return rows.status().with_context("read layer norms");
  std::vector<StepLayers> out;
  for (const Row& s : rows.value()) {
    const int64_t step = s.integer(0);
    if (out.empty() || out.back().step != step) out.push_back({step, {}});
    out.back().layers.push_back({s.integer(1), s.real(2), s.real(3)});
  }
  return out;
}

}  // namespace blocklab::lab
