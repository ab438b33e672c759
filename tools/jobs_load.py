#!/usr/bin/env python3
"""A bounded load test of the shared job queue, on loopback only (docs/deploy.md).

Starts `--replicas` `blocklab serve --no-jobs` processes and `--workers` `blocklab worker`s on one PostgreSQL
database (an empty one, --db), registers N students, then for a fixed time each student, signed in and through
a replica other than the one it registered on, submits a short training run, watches its event stream to the
end, and submits the next. Reports jobs finished per minute, the queue wait (from the store: started_s -
queued_s of each job's first start), each student's jobs (fairness: max / min), the event streams' errors, and
the non-2xx answers. Python's standard library, and Debian's psql to read the store; every loop is bounded.

  tools/jobs_load.py --db postgresql:///load?host=/tmp/pg [--students 100] [--seconds 120] [--replicas 2] [--workers 2]
                     [--greedy N]   # N students keep 4 jobs in flight: the fair queue still serves everyone alike
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from load_stats import percentile

JOB = {"task": "copy", "steps": 30, "batch": 4, "seq_len": 8,
       "config": {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_ff": 32}}


def start(cmd, folder, wait_for):
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, text=True,
                            cwd=folder)
    deadline, port = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        port = int(m.group(1)) if m else port
        if wait_for in line:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, port
    proc.kill()
    sys.exit(f"jobs_load: {' '.join(cmd[:2])} did not start")


class Student:
    def __init__(self, name, port):
        self.name, self.port, self.cookie, self.csrf = name, port, "", ""

    def call(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Host": f"127.0.0.1:{self.port}"}
        if self.cookie:
            headers["Cookie"] = "blocklab_session=" + self.cookie
        if body is not None:
            headers["Content-Type"] = "application/json"
            if self.csrf:
                headers["X-CSRF-Token"] = self.csrf
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            r = c.getresponse()
            text = r.read()
            set_cookie = r.getheader("Set-Cookie") or ""
            if set_cookie.startswith("blocklab_session="):
                self.cookie = set_cookie.split(";")[0].split("=", 1)[1]
            return r.status, (json.loads(text) if text else None)
        except (OSError, http.client.HTTPException, ValueError):
            return 0, None
        finally:
            c.close()

    def watch(self, run_id, timeout):
        """Reads the run's events to its end; returns the end status, or None."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", f"/api/runs/{run_id}/events", headers={"Host": f"127.0.0.1:{self.port}",
                                                                    "Cookie": "blocklab_session=" + self.cookie})
            r = c.getresponse()
            event = None
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "end":
                    return json.loads(line[6:]).get("status")
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            c.close()
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True, help="an empty PostgreSQL database's URL")
    ap.add_argument("--students", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--jobs-per-worker", type=int, default=1)
    ap.add_argument("--greedy", type=int, default=0,
                    help="this many students keep 4 jobs in flight (their quota) instead of one")
    ap.add_argument("--blocklab", default=os.path.join(os.path.dirname(__file__), "..", "build", "blocklab"))
    a = ap.parse_args()
    blocklab = os.path.abspath(a.blocklab)
    folder = tempfile.mkdtemp(prefix="blocklab-jobs-load-")
    checkpoints = os.path.join(folder, "checkpoints")
    procs, ports = [], []
    try:
        for i in range(a.replicas):
            p, port = start([blocklab, "serve", "--port", "0", "--db", a.db, "--no-jobs", "--quiet", "--checkpoints",
                             checkpoints, "--uploads", os.path.join(folder, "uploads"), "--max-conns-per-addr", "1024",
                             "--max-queue", "1000", "--max-jobs-per-account", "4"], folder, "blocklab serve: http://")
            procs.append(p)
            ports.append(port)
        for i in range(a.workers):
            p, _ = start([blocklab, "worker", "--db", a.db, "--max-jobs", str(a.jobs_per_worker), "--checkpoints",
                          checkpoints], folder, "Ctrl-C stops")
            procs.append(p)
        students = [Student(f"student{i:03d}", ports[i % len(ports)]) for i in range(a.students)]
        t0 = time.monotonic()
        for s in students:
            st, body = s.call("POST", "/api/auth/register", {"username": s.name, "password": "password " + s.name})
            if st != 201:
                sys.exit(f"jobs_load: register {s.name}: {st} {body}")
            s.csrf = body["csrf_token"]
            s.port = ports[(ports.index(s.port) + 1) % len(ports)]  # from now on, another replica
        print(f"{a.replicas} replica(s), {a.workers} worker(s) x {a.jobs_per_worker} job(s); "
              f"registered {a.students} students in {time.monotonic() - t0:.1f} s")
        lock = threading.Lock()
        stats = {"submitted": 0, "ended": 0, "non2xx": 0, "stream_errors": 0, "submit_ms": []}
        start_at = time.monotonic()
        end_at = start_at + a.seconds

        def work(s):
            while time.monotonic() < end_at:
                t = time.monotonic()
                st, body = s.call("POST", "/api/runs", dict(JOB, label=s.name))
                with lock:
                    stats["submit_ms"].append(1000 * (time.monotonic() - t))
                if st != 202:
                    with lock:
                        stats["non2xx"] += 1
                    time.sleep(1)
                    continue
                with lock:
                    stats["submitted"] += 1
                ended = s.watch(body["run_id"], timeout=max(5, end_at - time.monotonic() + 60))
                with lock:
                    stats["ended" if ended == "finished" else "stream_errors"] += 1

        threads = [threading.Thread(target=work, args=(s,)) for i, s in enumerate(students)
                   for _ in range(4 if i < a.greedy else 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start_at
        # From the store: each finished job's wait in the queue and its student.
        q = subprocess.run(["psql", a.db, "-AtF", ",", "-c",
                            "SELECT owner, started_s - queued_s, status FROM runs WHERE kind = 'job'"],
                           capture_output=True, text=True)
        if q.returncode != 0:
            sys.exit(f"jobs_load: psql: {q.stderr.strip()}")
        waits, per = [], {s.name: 0 for s in students}
        finished = 0
        for line in q.stdout.split():
            owner, wait, status = line.split(",")
            if status == "finished":
                finished += 1
                waits.append(float(wait))
                per[owner.split(":", 1)[1]] = per.get(owner.split(":", 1)[1], 0) + 1
        counts = sorted(per.values())
        if a.greedy:
            greedy = [per[s.name] for s in students[:a.greedy]]
            others = [per[s.name] for s in students[a.greedy:]]
            print(f"  greedy students (4 in flight): {min(greedy)}-{max(greedy)} jobs each; the others: "
                  f"{min(others)}-{max(others)}")
        print(f"{a.students} students for {a.seconds:.0f} s (all ended in {wall:.0f} s): {stats['submitted']} jobs "
              f"submitted, {finished} finished = {60 * finished / wall:.0f} jobs/min; non-2xx {stats['non2xx']}, "
              f"streams without a finished end {stats['stream_errors']}")
        print(f"  queue wait: p50 {percentile(waits, 50):.2f} s, p99 {percentile(waits, 99):.2f} s, "
              f"max {max(waits) if waits else float('nan'):.2f} s")
        print(f"  jobs per student: min {counts[0]}, max {counts[-1]} (max/min {counts[-1] / max(1, counts[0]):.2f})")
        print(f"  submit latency: p50 {percentile(stats['submit_ms'], 50):.1f} ms, p99 {percentile(stats['submit_ms'], 99):.1f} ms")
        return 1 if stats["non2xx"] or stats["stream_errors"] else 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
