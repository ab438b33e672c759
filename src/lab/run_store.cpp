#include "lab/run_store.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>

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
    // 4 -> 5: the job queue in the store, for every server and worker on it: whose quota a job counts
    // against, its lease, its cancel flag; the events its stream sends; the workers' heartbeats.
    R"sql(
ALTER TABLE runs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN lease_until_s {real} NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN queued_s {real} NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN started_s {real} NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN attempts {int} NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN cancel_requested {int} NOT NULL DEFAULT 0;
CREATE INDEX runs_queue ON runs(status, kind, id);
CREATE INDEX runs_owner ON runs(owner, status);
CREATE TABLE run_events (
  run_id {int} NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  seq {int} NOT NULL,
  event TEXT NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
){without_rowid};
CREATE TABLE workers (
  id TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  pid {int} NOT NULL,
  kind TEXT NOT NULL,
  max_jobs {int} NOT NULL,
  running {int} NOT NULL DEFAULT 0,
  started_at TEXT NOT NULL,
  heartbeat_s {real} NOT NULL
){without_rowid};
)sql",
    // 5 -> 6: the learning assistant's conversations of signed-in learners (docs/assistant.md): each
    // question and answer, the answer's citations and numbers as JSON; gone with the account.
    R"sql(
CREATE TABLE assistant_messages (
  id {id},
  user_id {int} NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  created_s {real} NOT NULL,
  created_at TEXT NOT NULL,
  role TEXT NOT NULL,
  page TEXT NOT NULL DEFAULT '',
  text TEXT NOT NULL,
  payload TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX assistant_messages_user ON assistant_messages(user_id, id);
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
    "user_id, owner, lease_owner, lease_until_s, queued_s, started_s, attempts, cancel_requested";

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
  r.owner = s.text(22);
  r.lease_owner = s.text(23);
  r.lease_until_s = s.real(24);
  r.queued_s = s.real(25);
  r.started_s = s.real(26);
  r.attempts = s.integer(27);
  r.cancel_requested = s.integer(28) != 0;
  if (r.status == "running" && lease_lost(r, wall_clock_s())) r.status = "interrupted";
  return r;
}

}  // namespace

bool lease_lost(const RunRecord& r, double now_s) {
  // A run without a lease (the CLI's, or a job of a blocklab before version 5) is its process's, here.
  if (r.lease_owner.empty()) return r.pid != int64_t(::getpid()) && !process_alive(r.pid);
  if (r.lease_until_s < now_s) return true;
  // host:pid:random — a holder on this host whose process is gone has lost it before it runs out.
  const size_t a = r.lease_owner.rfind(':'), b = a == std::string::npos ? a : r.lease_owner.rfind(':', a - 1);
  if (b == std::string::npos) return false;
  if (r.lease_owner.substr(0, b) != host_name()) return false;
  const int64_t pid = std::strtoll(r.lease_owner.c_str() + b + 1, nullptr, 10);
  return pid != int64_t(::getpid()) && !process_alive(pid);
}

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
  return buf;
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
      BLOCKLAB_RETURN_IF_ERROR(c.exec_script(db_->dialect_sql(kMigrations[v])));
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

std::string RunStore::fence_of(int64_t run_id) {
  std::lock_guard lock(fence_mu_);
  auto it = fences_.find(run_id);
  return it == fences_.end() ? "" : it->second;
}

void RunStore::fence(int64_t run_id, const std::string& worker) {
  std::lock_guard lock(fence_mu_);
  fences_[run_id] = worker;
}

void RunStore::unfence(int64_t run_id) {
  std::lock_guard lock(fence_mu_);
  fences_.erase(run_id);
}

namespace {
// An UPDATE of one run, limited to its lease holder when the run is fenced: "lease lost" when that
// changed nothing.
Status update_run(Connection& c, std::string sql, std::vector<Value> params, int64_t run_id, const std::string& fence,
                  const std::string& what) {
  sql += " WHERE id = ?";
  params.emplace_back(run_id);
  if (!fence.empty()) {
    sql += " AND lease_owner = ?";
    params.emplace_back(fence);
  }
  Result<Rows> r = c.query(sql, params);
  if (!r) return r.status().with_context(what);
  if (!fence.empty() && r->affected == 0)
    return Status::error("run " + std::to_string(run_id) + ": " + what + ": this worker's lease on it was lost");
  return Status::ok();
}
}  // namespace

Status RunStore::append_step(int64_t run_id, const StepRecord& st, const std::vector<LayerGradNorm>& layers) {
  const std::string fence = fence_of(run_id);
  return db_->transaction([&](Connection& c) -> Status {
    BLOCKLAB_RETURN_IF_ERROR(update_run(c, "UPDATE runs SET steps_done = ?, wall_s = ?, updated_at = ?",
                                        {st.step, st.wall_s, now_utc()}, run_id, fence, "update run"));
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
    return Status::ok();
  });
}

Status RunStore::resume_run(int64_t run_id, int64_t from_step, int64_t steps_total, int64_t pid) {
  const std::string fence = fence_of(run_id);
  return db_->transaction([&](Connection& c) -> Status {
    BLOCKLAB_RETURN_IF_ERROR(update_run(c,
                                        "UPDATE runs SET status = 'running', steps_done = ?, steps_total = ?, pid = ?, "
                                        "error = '', final_loss = NULL, final_accuracy = NULL, updated_at = ?",
                                        {from_step, steps_total, pid, now_utc()}, run_id, fence, "resume run"));
    BLOCKLAB_RETURN_IF_ERROR(c.query("DELETE FROM steps WHERE run_id = ? AND step > ?", {run_id, from_step}).status());
    return c.query("DELETE FROM layer_grad_norms WHERE run_id = ? AND step > ?", {run_id, from_step}).status();
  });
}

Status RunStore::set_checkpoint(int64_t run_id, const std::string& path, int64_t step) {
  const std::string fence = fence_of(run_id);
  return db_->with_connection([&](Connection& c) {
    return update_run(c, "UPDATE runs SET checkpoint_path = ?, checkpoint_step = ?, updated_at = ?",
                      {path, step, now_utc()}, run_id, fence, "set checkpoint");
  });
}

Status RunStore::finish_run(int64_t run_id, const std::string& status, std::optional<double> final_loss,
                            std::optional<double> final_accuracy, double wall_s, double tokens_per_s,
                            const std::string& error) {
  const std::string fence = fence_of(run_id);
  return db_->with_connection([&](Connection& c) {
    return update_run(c,
                      "UPDATE runs SET status = ?, final_loss = ?, final_accuracy = ?, wall_s = ?, tokens_per_s = ?, "
                      "error = ?, updated_at = ?, lease_owner = '', lease_until_s = 0",
                      {status, nullable(final_loss), nullable(final_accuracy), wall_s, tokens_per_s, error, now_utc()},
                      run_id, fence, "finish run");
  });
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

// ---- the job queue ----------------------------------------------------------------------------------

namespace {
// Queued jobs in the order they are claimed: owners with the fewest running jobs first, then the owner
// served longest ago, then the oldest job (a round-robin across owners).
constexpr const char* kFairOrder =
    " ORDER BY (SELECT count(*) FROM runs x WHERE x.owner = r.owner AND x.status = 'running' AND x.kind = 'job'), "
    "(SELECT coalesce(max(x.started_s), 0) FROM runs x WHERE x.owner = r.owner AND x.kind = 'job'), r.id";
}  // namespace

std::string new_worker_id() {
  unsigned char b[4];
  std::FILE* f = std::fopen("/dev/urandom", "rb");
  const bool ok = f && std::fread(b, 1, sizeof b, f) == sizeof b;
  if (f) std::fclose(f);
  char hex[9];
  std::snprintf(hex, sizeof hex, "%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
  return host_name() + ":" + std::to_string(::getpid()) + ":" + (ok ? hex : "0");
}

Result<RunStore::Admitted> RunStore::enqueue_job(const RunRecord& r, int owner_limit, int max_queued, double now_s,
                                                 const std::function<std::string(int64_t)>& first_event) {
  Admitted out;
  Status st = db_->transaction([&](Connection& c) -> Status {
    // One owner's submissions, from any server, are counted one after the other.
    BLOCKLAB_RETURN_IF_ERROR(db_->lock_key(c, "blocklab-owner:" + r.owner));
    if (owner_limit > 0 && !r.owner.empty()) {
      Result<Rows> n = c.query("SELECT count(*) FROM runs WHERE owner = ? AND kind = 'job' AND status IN ('queued', 'running')",
                               {r.owner});
      if (!n) return n.status();
      out.owner_active = n.value()[0].integer(0);
      if (out.owner_active >= owner_limit) {
        out.admission = Admission::owner_full;
        return Status::ok();
      }
    }
    Result<Rows> q = c.query("SELECT count(*) FROM runs WHERE kind = 'job' AND status = 'queued'");
    if (!q) return q.status();
    out.queued = q.value()[0].integer(0);
    if (max_queued > 0 && out.queued >= max_queued) {
      out.admission = Admission::queue_full;
      return Status::ok();
    }
    const std::string now = now_utc();
    Result<Rows> id = c.query(
        "INSERT INTO runs (created_at, updated_at, kind, task, experiment, label, config_json, options_json, seed, "
        "status, steps_done, steps_total, checkpoint_path, pid, user_id, owner, queued_s) "
        "VALUES (?, ?, 'job', ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, 0, ?, ?, ?) RETURNING id",
        {now, now, r.task, r.experiment, r.label, r.config_json, r.options_json, int64_t(r.seed), r.steps_total,
         r.checkpoint_path, nullable_id(r.user_id), r.owner, now_s});
    if (!id) return id.status().with_context("queue job");
    out.run_id = id.value()[0].integer(0);
    return c.query("INSERT INTO run_events (run_id, seq, event, data) VALUES (?, 1, 'status', ?)",
                   {out.run_id, first_event(out.run_id)})
        .status();
  });
  if (!st) return st;
  if (out.admission == Admission::admitted) db_->notify("job");
  return out;
}

Result<std::optional<RunRecord>> RunStore::claim_job(const std::string& worker, int64_t pid, double now_s,
                                                     double lease_s) {
  std::optional<RunRecord> out;
  Status st = db_->transaction([&](Connection& c) -> Status {
    Result<Rows> next = c.query(db_->dialect_sql(std::string("SELECT r.id FROM runs r WHERE r.status = 'queued' AND "
                                                             "r.kind = 'job'") +
                                                 kFairOrder + " LIMIT 1{for_update}"));
    if (!next) return next.status().with_context("claim job");
    if (next->empty()) return Status::ok();
    Result<Rows> got = c.query(std::string("UPDATE runs SET status = 'running', lease_owner = ?, lease_until_s = ?, "
                                           "started_s = ?, attempts = attempts + 1, pid = ?, updated_at = ? "
                                           "WHERE id = ? AND status = 'queued' RETURNING ") +
                                   kRunColumns,
                               {worker, now_s + lease_s, now_s, pid, now_utc(), next.value()[0].integer(0)});
    if (!got) return got.status().with_context("claim job");
    if (!got->empty()) out = read_run(got.value()[0]);
    return Status::ok();
  });
  if (!st) return st;
  return out;
}

Result<RunStore::Leases> RunStore::renew_leases(const std::string& worker, double now_s, double lease_s) {
  Result<Rows> r = db_->query(
      "UPDATE runs SET lease_until_s = ? WHERE lease_owner = ? AND status = 'running' RETURNING id, cancel_requested",
      {now_s + lease_s, worker});
  if (!r) return r.status().with_context("renew leases");
  Leases out;
  for (const Row& row : r.value()) {
    out.held.push_back(row.integer(0));
    if (row.integer(1) != 0) out.cancel_requested.push_back(row.integer(0));
  }
  return out;
}

Result<std::vector<int64_t>> RunStore::requeue_lost(double now_s) {
  Result<std::vector<RunRecord>> running = select_runs("WHERE kind = 'job' AND status = 'running'", {});
  if (!running) return running.status();
  std::vector<int64_t> out;
  for (const RunRecord& r : running.value()) {
    if (!lease_lost(r, now_s)) continue;
    Result<Rows> u = db_->query(
        "UPDATE runs SET status = 'queued', lease_owner = '', lease_until_s = 0, updated_at = ? "
        "WHERE id = ? AND status = 'running' AND lease_owner = ? AND lease_until_s = ?",
        {now_utc(), r.id, r.lease_owner, r.lease_until_s});
    if (!u) return u.status().with_context("requeue job");
    if (u->affected > 0) out.push_back(r.id);
  }
  if (!out.empty()) db_->notify("job");
  return out;
}

Status RunStore::release_job(int64_t run_id, const std::string& worker) {
  // Its trainer may have marked it cancelled already (stopped after a step, checkpointed): unless a
  // user asked for that, it is queued again.
  Status st = db_->query("UPDATE runs SET status = 'queued', lease_owner = '', lease_until_s = 0, final_loss = NULL, "
                         "final_accuracy = NULL, updated_at = ? WHERE id = ? AND lease_owner IN (?, '') AND "
                         "status IN ('running', 'cancelled') AND cancel_requested = 0",
                         {now_utc(), run_id, worker})
                  .status()
                  .with_context("release job");
  if (st) db_->notify("job");
  return st;
}

Result<std::string> RunStore::request_cancel(int64_t run_id, const std::string& end_event_data) {
  std::string out;
  Status st = db_->transaction([&](Connection& c) -> Status {
    Result<Rows> q = c.query("UPDATE runs SET status = 'cancelled', updated_at = ? WHERE id = ? AND status = 'queued'",
                             {now_utc(), run_id});
    if (!q) return q.status();
    if (q->affected > 0) {
      out = "cancelled";
      BLOCKLAB_RETURN_IF_ERROR(db_->lock_key(c, "blocklab-events:" + std::to_string(run_id)));
      return c.query("INSERT INTO run_events (run_id, seq, event, data) VALUES (?, (SELECT coalesce(max(seq), 0) + 1 "
                     "FROM run_events WHERE run_id = ?), 'end', ?)",
                     {run_id, run_id, end_event_data})
          .status();
    }
    Result<Rows> r = c.query("UPDATE runs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", {run_id});
    if (!r) return r.status();
    if (r->affected > 0) out = "cancelling";
    return Status::ok();
  });
  if (!st) return st.with_context("cancel run");
  db_->notify(out == "cancelled" ? "e:" + std::to_string(run_id) : "cancel:" + std::to_string(run_id));
  return out;
}

Result<std::vector<RunRecord>> RunStore::queue() {
  Result<Rows> rows = db_->query(std::string("SELECT ") + kRunColumns +
                                 " FROM runs r WHERE r.status = 'queued' AND r.kind = 'job'" + kFairOrder);
  if (!rows) return rows.status().with_context("read the queue");
  std::vector<RunRecord> out;
  for (const Row& row : rows.value()) out.push_back(read_run(row));
  return out;
}

Result<int64_t> RunStore::count_jobs(const std::string& status) {
  Result<Rows> r = db_->query("SELECT count(*) FROM runs WHERE kind = 'job' AND status = ?", {status});
  if (!r) return r.status();
  return r.value()[0].integer(0);
}

// ---- run events ----

Result<int64_t> RunStore::append_event(int64_t run_id, const std::string& event, const std::string& data) {
  // Each run's events are numbered 1, 2, 3, … with no gap, so that a reader that has seen n asks for what
  // follows n. Writers to one run (its lease holder, and now and then a cancel or a requeue from another
  // process) take the run's lock for the insert, which orders them.
  int64_t seq = 0;
  Status st = db_->transaction([&](Connection& c) -> Status {
    BLOCKLAB_RETURN_IF_ERROR(db_->lock_key(c, "blocklab-events:" + std::to_string(run_id)));
    Result<Rows> r = c.query(
        "INSERT INTO run_events (run_id, seq, event, data) VALUES (?, (SELECT coalesce(max(seq), 0) + 1 FROM run_events "
        "WHERE run_id = ?), ?, ?) RETURNING seq",
        {run_id, run_id, event, data});
    if (!r) return r.status();
    seq = r.value()[0].integer(0);
    return Status::ok();
  });
  if (!st) return st.with_context("append event");
  db_->notify("e:" + std::to_string(run_id));
  return seq;
}

Result<std::vector<RunEvent>> RunStore::events(int64_t run_id, int64_t after_seq) {
  Result<Rows> r = db_->query("SELECT seq, event, data FROM run_events WHERE run_id = ? AND seq > ? ORDER BY seq",
                              {run_id, after_seq});
  if (!r) return r.status().with_context("read events");
  std::vector<RunEvent> out;
  out.reserve(r->size());
  for (const Row& row : r.value()) out.push_back({row.integer(0), row.text(1), row.text(2)});
  return out;
}

// ---- workers ----

Status RunStore::heartbeat(const WorkerRecord& w) {
  return db_->query("INSERT INTO workers (id, host, pid, kind, max_jobs, running, started_at, heartbeat_s) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET running = excluded.running, "
                    "max_jobs = excluded.max_jobs, heartbeat_s = excluded.heartbeat_s",
                    {w.id, w.host, w.pid, w.kind, w.max_jobs, w.running, w.started_at, w.heartbeat_s})
      .status()
      .with_context("worker heartbeat");
}

Status RunStore::remove_worker(const std::string& id) {
  return db_->query("DELETE FROM workers WHERE id = ?", {id}).status();
}

Result<std::vector<WorkerRecord>> RunStore::workers() {
  Result<Rows> r = db_->query(
      "SELECT id, host, pid, kind, max_jobs, running, started_at, heartbeat_s FROM workers ORDER BY started_at, id");
  if (!r) return r.status().with_context("list workers");
  std::vector<WorkerRecord> out;
  for (const Row& row : r.value())
    out.push_back({row.text(0), row.text(1), row.text(3), row.integer(2), row.integer(4), row.integer(5), row.text(6),
                   row.real(7)});
  return out;
}

}  // namespace blocklab::lab
