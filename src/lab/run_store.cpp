#include "lab/run_store.h"

#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "lab/sqlite_stmt.h"

namespace blocklab::lab {

namespace {

// The schema, one migration per version: migration i takes user_version i to i + 1.
const char* const kMigrations[] = {
    // 0 -> 1: runs and their per-step metrics.
    R"sql(
CREATE TABLE runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  kind TEXT NOT NULL,
  task TEXT NOT NULL,
  label TEXT NOT NULL DEFAULT '',
  config_json TEXT NOT NULL,
  options_json TEXT NOT NULL,
  seed INTEGER NOT NULL,
  status TEXT NOT NULL,
  steps_done INTEGER NOT NULL DEFAULT 0,
  steps_total INTEGER NOT NULL,
  final_loss REAL,
  final_accuracy REAL,
  wall_s REAL NOT NULL DEFAULT 0,
  tokens_per_s REAL NOT NULL DEFAULT 0,
  checkpoint_path TEXT NOT NULL DEFAULT '',
  checkpoint_step INTEGER NOT NULL DEFAULT 0,
  pid INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE steps (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL,
  loss REAL,
  accuracy REAL,
  lr REAL,
  grad_norm REAL,
  wall_s REAL,
  PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
)sql",
    // 1 -> 2: experiments name their runs; per-layer gradient norms every k steps.
    R"sql(
ALTER TABLE runs ADD COLUMN experiment TEXT NOT NULL DEFAULT '';
CREATE TABLE layer_grad_norms (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL,
  layer INTEGER NOT NULL,
  grad_norm_params REAL,
  grad_norm_resid REAL,
  PRIMARY KEY (run_id, step, layer)
) WITHOUT ROWID;
)sql",
    // 2 -> 3: accounts, their sessions, class codes, comments on the web app's sections, and the log of
    // every moderation action; runs may belong to an account (null: the CLI's, or anonymous).
    R"sql(
CREATE TABLE users (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  name_key TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('student', 'teacher')),
  blocked INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);
CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,
  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  created_s REAL NOT NULL,
  last_seen_s REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions(user_id);
CREATE TABLE class_codes (
  code_hash TEXT PRIMARY KEY,
  created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
  created_at TEXT NOT NULL,
  expires_s REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE comments (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  section TEXT NOT NULL,
  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  body TEXT NOT NULL,
  html TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_s REAL NOT NULL,
  hidden INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX comments_section ON comments(section, id);
CREATE INDEX comments_user_time ON comments(user_id, created_s);
CREATE TABLE moderation_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT ''
);
ALTER TABLE runs ADD COLUMN user_id INTEGER REFERENCES users(id) ON DELETE SET NULL;
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

RunRecord read_run(const Stmt& s) {
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

Status RunStore::sql_error(const std::string& what) {
  return Status::error(path_ + ": " + what + ": " + sqlite3_errmsg(db_));
}

Status RunStore::exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return Status::error(path_ + ": " + msg);
  }
  return Status::ok();
}

Result<std::unique_ptr<RunStore>> RunStore::open(const std::string& path) { return open_impl(path, kSchemaVersion); }

Result<std::unique_ptr<RunStore>> RunStore::open_at_version(const std::string& path, int version) {
  return open_impl(path, version);
}

Result<std::unique_ptr<RunStore>> RunStore::open_impl(const std::string& path, int target_version) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    const std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return Status::error(path + ": cannot open the run store: " + msg);
  }
  std::unique_ptr<RunStore> store(new RunStore(db, path));
  sqlite3_busy_timeout(db, 10000);
  // WAL: readers never block the writer; synchronous=NORMAL keeps every committed transaction through a
  // process crash (only an OS crash or power loss could lose the last ones).
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON"}) {
    Status st = store->exec(pragma);
    if (!st) return Status::error(path + ": not a usable run store (" + st.message() + ")");
  }
  BLOCKLAB_RETURN_IF_ERROR(store->migrate(target_version));
  return store;
}

int RunStore::schema_version() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "PRAGMA user_version");
  return s.step() == SQLITE_ROW ? int(s.integer(0)) : -1;
}

std::string RunStore::integrity_check() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "PRAGMA integrity_check");
  return s.step() == SQLITE_ROW ? s.text(0) : sqlite3_errmsg(db_);
}

Status RunStore::migrate(int target_version) {
  const int version = schema_version();
  if (version > kSchemaVersion)
    return Status::error(path_ + ": run store schema version " + std::to_string(version) +
                         " is newer than this blocklab's (" + std::to_string(kSchemaVersion) + ")");
  for (int v = version; v < target_version; ++v) {
    std::lock_guard lock(mu_);
    BLOCKLAB_RETURN_IF_ERROR(exec("BEGIN IMMEDIATE"));
    // Another process may have migrated while we waited for the lock.
    Stmt check(db_, "PRAGMA user_version");
    if (check.step() == SQLITE_ROW && check.integer(0) > v) {
      BLOCKLAB_RETURN_IF_ERROR(exec("COMMIT"));
      continue;
    }
    Status st = exec(kMigrations[v]);
    if (st) st = exec("PRAGMA user_version = " + std::to_string(v + 1));
    if (!st) {
      (void)exec("ROLLBACK");
      return Status::error("migrating the run store to version " + std::to_string(v + 1) + ": " + st.message());
    }
    BLOCKLAB_RETURN_IF_ERROR(exec("COMMIT"));
  }
  return Status::ok();
}

RunStore::~RunStore() { sqlite3_close(db_); }

Result<int64_t> RunStore::create_run(const RunRecord& r) {
  std::lock_guard lock(mu_);
  Stmt s(db_,
         "INSERT INTO runs (created_at, updated_at, kind, task, experiment, label, config_json, options_json, seed, "
         "status, steps_done, steps_total, checkpoint_path, pid, user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!s.ok()) return sql_error("create run");
  const std::string now = now_utc();
  s.bind(1, now).bind(2, now).bind(3, r.kind).bind(4, r.task).bind(5, r.experiment).bind(6, r.label);
  s.bind(7, r.config_json).bind(8, r.options_json).bind(9, int64_t(r.seed)).bind(10, r.status);
  s.bind(11, r.steps_done).bind(12, r.steps_total).bind(13, r.checkpoint_path).bind(14, r.pid);
  if (r.user_id > 0) s.bind(15, r.user_id);
  else s.bind_null(15);
  if (s.step() != SQLITE_DONE) return sql_error("create run");
  return int64_t(sqlite3_last_insert_rowid(db_));
}

Status RunStore::append_step(int64_t run_id, const StepRecord& st, const std::vector<LayerGradNorm>& layers) {
  std::lock_guard lock(mu_);
  BLOCKLAB_RETURN_IF_ERROR(exec("BEGIN IMMEDIATE"));
  auto fail = [&](const std::string& what) {
    Status e = sql_error(what);
    (void)exec("ROLLBACK");
    return e;
  };
  {
    Stmt s(db_, "INSERT OR REPLACE INTO steps (run_id, step, loss, accuracy, lr, grad_norm, wall_s) VALUES (?, ?, ?, ?, ?, ?, ?)");
    s.bind(1, run_id).bind(2, st.step).bind(3, st.loss).bind(4, st.accuracy).bind(5, st.lr).bind(6, st.grad_norm);
    s.bind(7, st.wall_s);
    if (s.step() != SQLITE_DONE) return fail("append step");
  }
  for (const LayerGradNorm& l : layers) {
    Stmt s(db_,
           "INSERT OR REPLACE INTO layer_grad_norms (run_id, step, layer, grad_norm_params, grad_norm_resid) "
           "VALUES (?, ?, ?, ?, ?)");
    s.bind(1, run_id).bind(2, st.step).bind(3, l.layer).bind(4, l.grad_norm_params).bind(5, l.grad_norm_resid);
    if (s.step() != SQLITE_DONE) return fail("append layer norms");
  }
  {
    Stmt s(db_, "UPDATE runs SET steps_done = ?, wall_s = ?, updated_at = ? WHERE id = ?");
    s.bind(1, st.step).bind(2, st.wall_s).bind(3, now_utc()).bind(4, run_id);
    if (s.step() != SQLITE_DONE) return fail("update run");
  }
  return exec("COMMIT");
}

Status RunStore::resume_run(int64_t run_id, int64_t from_step, int64_t steps_total, int64_t pid) {
  std::lock_guard lock(mu_);
  BLOCKLAB_RETURN_IF_ERROR(exec("BEGIN IMMEDIATE"));
  const std::string id = std::to_string(run_id), from = std::to_string(from_step);
  Status st = exec("DELETE FROM steps WHERE run_id = " + id + " AND step > " + from);
  if (st) st = exec("DELETE FROM layer_grad_norms WHERE run_id = " + id + " AND step > " + from);
  if (st) {
    Stmt s(db_,
           "UPDATE runs SET status = 'running', steps_done = ?, steps_total = ?, pid = ?, error = '', final_loss = NULL, "
           "final_accuracy = NULL, updated_at = ? WHERE id = ?");
    s.bind(1, from_step).bind(2, steps_total).bind(3, pid).bind(4, now_utc()).bind(5, run_id);
    if (s.step() != SQLITE_DONE) st = sql_error("resume run");
  }
  if (!st) {
    (void)exec("ROLLBACK");
    return st;
  }
  return exec("COMMIT");
}

Status RunStore::set_checkpoint(int64_t run_id, const std::string& path, int64_t step) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "UPDATE runs SET checkpoint_path = ?, checkpoint_step = ?, updated_at = ? WHERE id = ?");
  s.bind(1, path).bind(2, step).bind(3, now_utc()).bind(4, run_id);
  return s.step() == SQLITE_DONE ? Status::ok() : sql_error("set checkpoint");
}

Status RunStore::finish_run(int64_t run_id, const std::string& status, std::optional<double> final_loss,
                            std::optional<double> final_accuracy, double wall_s, double tokens_per_s,
                            const std::string& error) {
  std::lock_guard lock(mu_);
  Stmt s(db_,
         "UPDATE runs SET status = ?, final_loss = ?, final_accuracy = ?, wall_s = ?, tokens_per_s = ?, error = ?, "
         "updated_at = ? WHERE id = ?");
  s.bind(1, status).bind(2, final_loss).bind(3, final_accuracy).bind(4, wall_s).bind(5, tokens_per_s).bind(6, error);
  s.bind(7, now_utc()).bind(8, run_id);
  return s.step() == SQLITE_DONE ? Status::ok() : sql_error("finish run");
}

Result<std::vector<RunRecord>> RunStore::list_runs() {
  std::lock_guard lock(mu_);
  Stmt s(db_, (std::string("SELECT ") + kRunColumns + " FROM runs ORDER BY id").c_str());
  if (!s.ok()) return sql_error("list runs");
  std::vector<RunRecord> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(read_run(s));
  if (rc != SQLITE_DONE) return sql_error("list runs");
  return out;
}

Result<std::vector<RunRecord>> RunStore::list_runs_of(int64_t user_id) {
  std::lock_guard lock(mu_);
  Stmt s(db_, (std::string("SELECT ") + kRunColumns + " FROM runs WHERE user_id = ? ORDER BY id").c_str());
  if (!s.ok()) return sql_error("list runs");
  s.bind(1, user_id);
  std::vector<RunRecord> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(read_run(s));
  if (rc != SQLITE_DONE) return sql_error("list runs");
  return out;
}

Result<RunRecord> RunStore::get_run(int64_t id) {
  std::lock_guard lock(mu_);
  Stmt s(db_, (std::string("SELECT ") + kRunColumns + " FROM runs WHERE id = ?").c_str());
  s.bind(1, id);
  const int rc = s.step();
  if (rc == SQLITE_ROW) return read_run(s);
  if (rc == SQLITE_DONE) return Status::error("run " + std::to_string(id) + ": no such run in " + path_);
  return sql_error("get run");
}

Result<std::vector<StepRecord>> RunStore::steps(int64_t run_id) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT step, loss, accuracy, lr, grad_norm, wall_s FROM steps WHERE run_id = ? ORDER BY step");
  s.bind(1, run_id);
  std::vector<StepRecord> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW)
    out.push_back({s.integer(0), s.real(1), s.real(2), s.real(3), s.real(4), s.real(5)});
  if (rc != SQLITE_DONE) return sql_error("read steps");
  return out;
}

Result<std::vector<RunStore::StepLayers>> RunStore::layer_grad_norms(int64_t run_id) {
  std::lock_guard lock(mu_);
  Stmt s(db_,
         "SELECT step, layer, grad_norm_params, grad_norm_resid FROM layer_grad_norms WHERE run_id = ? "
         "ORDER BY step, layer");
  s.bind(1, run_id);
  std::vector<StepLayers> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    const int64_t step = s.integer(0);
    if (out.empty() || out.back().step != step) out.push_back({step, {}});
    out.back().layers.push_back({s.integer(1), s.real(2), s.real(3)});
  }
  if (rc != SQLITE_DONE) return sql_error("read layer norms");
  return out;
}

}  // namespace blocklab::lab
