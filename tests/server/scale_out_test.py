#!/usr/bin/python3
"""Several machines on one PostgreSQL store (contract section 9), for real, on loopback: two `serve --no-jobs`
replicas and two `blocklab worker`s share one job queue. Jobs are submitted through both replicas and watched
from the other one; a worker is killed with SIGKILL while it trains, then a replica is too. Checks that every
job finishes exactly once, never trained by two processes at once, with the same final loss as an
uninterrupted run of the same job (same seed), and that a watcher on the other replica saw every step.

    BLOCKLAB_TEST_POSTGRES=postgresql:///postgres?host=…  \\
      /usr/bin/python3 tests/server/scale_out_test.py --blocklab build/blocklab --source-dir .

Python's standard library, and Debian's psql to make the database. Prints PASS/FAIL lines; exit 1 on a failure.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from blocklab_procs import HOST, Checks, Client, Database, Proc, read_events


class Watcher(threading.Thread):
    """Reads one run's event stream to its end from the first of `ports`; when that server goes away it
    reconnects to the next, as a browser behind a load balancer would (the stream starts again from the
    run's first event)."""

    def __init__(self, ports, run_id):
        super().__init__(daemon=True)
        self.ports, self.run_id = list(ports), run_id
        self.steps, self.statuses, self.end, self.error, self.reconnects = set(), [], None, None, 0

    def run(self):
        deadline, at = time.monotonic() + 600, 0
        while self.end is None and time.monotonic() < deadline:
            try:
                steps, statuses, end = read_events(self.ports[at % len(self.ports)], self.run_id)
                self.steps |= steps
                self.statuses += statuses
                self.end = end
            except (OSError, ValueError) as e:  # the server went away: the next one
                self.error = repr(e)
            if self.end is None:
                at += 1
                self.reconnects += 1
                time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocklab", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--steps", type=int, default=400)
    opts = ap.parse_args()
    blocklab, source = os.path.abspath(opts.blocklab), os.path.abspath(opts.source_dir)
    check = Checks()
    database = Database("scale_out")
    if not check("a database on the tests' PostgreSQL", database.url, database.why):
        return check.summary()
    db = database.url
    folder = tempfile.mkdtemp(prefix="blocklab_scale_out_")
    checkpoints = os.path.join(folder, "checkpoints")  # the folder every process shares

    procs = []

    def serve(label):
        p = Proc([blocklab, "serve", "--host", HOST, "--port", "0", "--db", db, "--no-jobs", "--quiet",
                  "--checkpoints", checkpoints, "--models", os.path.join(source, "models"),
                  "--uploads", os.path.join(folder, label, "uploads"), "--max-jobs-anonymous", "64", "--max-queue", "64"],
                 os.path.join(folder, label), label, "blocklab serve: http://")
        procs.append(p)
        return p

    def worker(label):
        p = Proc([blocklab, "worker", "--db", db, "--max-jobs", "1", "--checkpoints", checkpoints],
                 os.path.join(folder, label), label, "Ctrl-C stops")
        procs.append(p)
        return p

    def call(port, method, path, body=None):
        st, j, _ = Client(port).request(method, path, body)
        return st, j

    def job(seed):
        return {"task": "copy", "steps": opts.steps, "seed": seed, "config": {"n_layers": 2, "d_model": 32, "d_ff": 64}}

    def wait_runs(port, ids, timeout):
        deadline, runs = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            st, j = call(port, "GET", "/api/runs")
            if st == 200:
                runs = {r["id"]: r for r in j["runs"] if r["id"] in ids}
                if len(runs) == len(ids) and all(r["status"] not in ("queued", "running") for r in runs.values()):
                    break
            time.sleep(0.5)
        return runs

    try:
        a, b = serve("replica-a"), serve("replica-b")
        w1, w2 = worker("worker-1"), worker("worker-2")
        st, j = call(a.port, "GET", "/api/health")
        check("health lists both workers", st == 200 and len(j["workers"]) == 2 and j["store"]["backend"] == "postgresql",
              str(j)[:300])
        # Four jobs, two through each replica, each watched from the other one.
        ids, watchers = [], []
        for i, (port, other) in enumerate([(a.port, b.port), (b.port, a.port), (a.port, b.port), (b.port, a.port)]):
            st, j = call(port, "POST", "/api/runs", job(seed=10 + i))
            if not check(f"job {i} submitted", st == 202, f"{st} {j}"):
                continue
            ids.append(j["run_id"])
            w = Watcher([other, port], j["run_id"])
            w.start()
            watchers.append(w)
        # Kill a worker with SIGKILL while it is past a checkpoint, mid-run.
        victim_run = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and victim_run is None:
            st, j = call(b.port, "GET", "/api/runs")
            for r in (j or {}).get("runs", []):
                if r["status"] == "running" and r["checkpoint"]["step"] > 0 and r["steps_done"] < opts.steps * 0.8:
                    victim_run = r
                    break
            time.sleep(0.05)
        if check("a job ran past a checkpoint", victim_run is not None):
            st, detail = call(b.port, "GET", f"/api/runs/{victim_run['id']}")
            # The lease names the process that holds the job: host:pid:random.
            holder = database.psql(f"SELECT lease_owner FROM runs WHERE id = {victim_run['id']}").stdout.strip()
            target = w1 if f":{w1.proc.pid}:" in holder else w2
            check("the job's lease names one of the workers", f":{target.proc.pid}:" in holder, holder)
            target.stop(signal.SIGKILL)
            print(f"     killed {target.name} (pid {target.proc.pid}) at step {victim_run['steps_done']} of run {victim_run['id']}")
        # Kill replica A too; B and the other worker carry on; a new worker joins.
        time.sleep(1.0)
        a.stop(signal.SIGKILL)
        w3 = worker("worker-3")
        runs = wait_runs(b.port, ids, 300)
        check("every job finished", len(runs) == len(ids) and all(r["status"] == "finished" for r in runs.values()),
              json.dumps({k: (v["status"], v["steps_done"], v["error"]) for k, v in runs.items()}))
        if victim_run is not None and victim_run["id"] in runs:
            check("the killed worker's job was resumed elsewhere", runs[victim_run["id"]]["attempts"] >= 2,
                  str(runs[victim_run["id"]]["attempts"]))
        for w in watchers:
            w.join(60)
            check(f"the watcher of run {w.run_id} on the other replica saw every step and the end",
                  w.end is not None and w.end.get("status") == "finished" and w.steps == set(range(1, opts.steps + 1)),
                  f"end={w.end} missing={sorted(set(range(1, opts.steps + 1)) - w.steps)[:10]} error={w.error}")
            # Never two processes at once: each "running" after the first follows a "requeued".
            seq = [s for s in w.statuses if s.get("status") in ("running", "queued")]
            overlapping = any(x.get("status") == "running" and y.get("status") == "running" for x, y in zip(seq, seq[1:]))
            check(f"run {w.run_id} was trained by one process at a time", not overlapping, str(seq))
        # Exactly once: one end event per run in the store, every step once.
        out = database.psql("SELECT run_id, count(*) FROM run_events WHERE event = 'end' GROUP BY run_id")
        ends = dict(line.split("|") for line in out.stdout.split())
        check("one end event per job", all(ends.get(str(i)) == "1" for i in ids), out.stdout + out.stderr)
        # The same final loss as uninterrupted runs of the same jobs.
        refs = []
        for i in range(len(ids)):
            st, j = call(b.port, "POST", "/api/runs", job(seed=10 + i))
            refs.append(j["run_id"] if st == 202 else None)
        ref_runs = wait_runs(b.port, [r for r in refs if r], 300)
        for i, rid in enumerate(ids):
            ref = ref_runs.get(refs[i]) if refs[i] else None
            got = runs.get(rid)
            check(f"run {rid}'s final loss equals an uninterrupted run's", ref and got and ref["attempts"] == 1 and
                  got["final"]["loss"] == ref["final"]["loss"],
                  f"{got and got['final']} vs {ref and ref['final']}")
        st, j = call(b.port, "GET", "/api/health")
        check("health: the killed worker is not listed live", st == 200 and all(
            f":{target.proc.pid}:" not in w["id"] for w in j["workers"]), str(j.get("workers"))[:300])
        lst = subprocess.run([blocklab, "workers", "--db", db], capture_output=True, text=True)
        check("blocklab workers lists the live ones", lst.returncode == 0 and "2 worker(s) live" in lst.stdout, lst.stdout)
    except Exception as e:
        check("the test ran to its end", False, repr(e))
    finally:
        for p in procs:
            p.stop(signal.SIGTERM)
        shutil.rmtree(folder, ignore_errors=True)
        database.close()
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
