#!/usr/bin/python3
"""Two `blocklab serve` processes on one PostgreSQL database share users, sessions, sign-in throttling,
comments, moderation, runs and the job queue (Python 3 standard library, and Debian's psql to make the database).

    BLOCKLAB_TEST_POSTGRES=postgresql:///postgres?host=…  \\
      /usr/bin/python3 tests/server/replicas_test.py --blocklab build/blocklab --source-dir .

ctest runs it with its postgres fixture's server (scripts/test_postgres.sh). Every check prints
`PASS name` or `FAIL name: why`; exit status 1 if any failed. Without PostgreSQL it fails, naming why.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

from blocklab_procs import HOST, Checks, Client, Database, Proc, read_events


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocklab", required=True)
    ap.add_argument("--source-dir", required=True)
    opts = ap.parse_args()
    opts.blocklab, opts.source_dir = os.path.abspath(opts.blocklab), os.path.abspath(opts.source_dir)
    check = Checks()
    database = Database("replicas")
    if not check("a database on the tests' PostgreSQL", database.url, database.why):
        return check.summary()
    db = database.url
    folder = tempfile.mkdtemp(prefix="blocklab_replicas_")
    servers = []

    def serve(label, args=()):
        p = Proc([opts.blocklab, "serve", "--host", HOST, "--port", "0", "--db", db, "--quiet", "--uploads",
                  os.path.join(folder, label, "uploads"), "--models", os.path.join(opts.source_dir, "models"), *args],
                 os.path.join(folder, label), f"replica {label}", "blocklab serve: http://")
        servers.append(p)
        return p
    try:
        # The first teacher, made on the command line in the shared store.
        pw_file = os.path.join(folder, "pw")
        with open(pw_file, "w") as f:
            f.write("teacher password 1\n")
        made = subprocess.run([opts.blocklab, "users", "add", "prof", "--role", "teacher", "--password-file", pw_file,
                               "--db", db], capture_output=True, text=True)
        check("users add on PostgreSQL", made.returncode == 0, made.stderr.strip())

        a = serve("A", ["--max-jobs", "1"])
        # Training jobs on A: one runs, the rest wait in A's queue when B starts.
        job = {"task": "copy", "steps": 150, "config": {"n_layers": 1}}
        run_ids = []
        for _ in range(2):
            st, j, _ = Client(a.port).request("POST", "/api/runs", job)
            if check("a job submitted on A", st == 202 and j and "run_id" in j, f"{st} {j}"):
                run_ids.append(j["run_id"])
        st, j, _ = Client(a.port).request("GET", f"/api/runs/{run_ids[-1]}")
        check("the second job waits in A's queue", st == 200 and j["status"] == "queued", f"{st} {str(j)[:200]}")
        b = serve("B")
        # The queue is the store's: B, with a free slot, may take the job waiting in A's queue; either way
        # each job runs once.

        # An account made on A signs in on B, and its session from A is valid on B.
        student = Client(a.port)
        st, j, _ = student.request("POST", "/api/auth/register", {"username": "ada", "password": "correct horse"})
        check("register on A", st == 201, f"{st} {j}")
        st, j, _ = student.on(b.port).request("GET", "/api/auth/me")
        check("A's session is valid on B", st == 200 and j["user"]["name"] == "ada", f"{st} {j}")
        st, j, _ = Client(b.port).request("POST", "/api/auth/login", {"username": "ada", "password": "correct horse"})
        check("sign in on B with the account made on A", st == 200, f"{st} {j}")

        # A comment posted on B (with A's session and CSRF token) appears on A.
        section = "ffn#position-wise"
        st, j, _ = student.on(b.port).request("POST", "/api/comments", {"section": section, "body": "posted *on B*"})
        check("post on B with A's session", st == 201, f"{st} {j}")
        comment_id = j["comment"]["id"] if st == 201 else 0
        st, j, _ = Client(a.port).request("GET", "/api/comments?section=" + urllib.parse.quote(section, safe=""))
        bodies = [c["body"] for c in (j or {}).get("comments", [])]
        check("B's comment is on A", st == 200 and "posted *on B*" in bodies, f"{st} {j}")

        # A teacher on A hides it; a student on B no longer sees it; the action is logged once.
        teacher = Client(a.port)
        st, j, _ = teacher.request("POST", "/api/auth/login", {"username": "prof", "password": "teacher password 1"})
        check("teacher signs in on A", st == 200, f"{st} {j}")
        st, j, _ = teacher.request("POST", f"/api/comments/{comment_id}/hide", {})
        check("teacher hides on A", st in (200, 204), f"{st} {j}")
        st, j, _ = student.on(b.port).request("GET", "/api/comments?section=" + urllib.parse.quote(section, safe=""))
        ids = [c["id"] for c in (j or {}).get("comments", [])]
        check("the hidden comment is gone on B", st == 200 and comment_id not in ids, f"{st} {j}")

        # Sign-in throttling is shared: failures on A count on B.
        for _ in range(5):
            Client(a.port).request("POST", "/api/auth/login", {"username": "ada", "password": "wrong password"})
        st, j, r = Client(b.port).request("POST", "/api/auth/login", {"username": "ada", "password": "wrong password"})
        check("failures on A throttle sign-in on B", st == 429 and r.getheader("Retry-After"), f"{st} {j}")

        # Signing out on B ends the session on A.
        st, _, _ = student.on(b.port).request("POST", "/api/auth/logout", {})
        check("sign out on B", st == 204, str(st))
        st, j, _ = student.request("GET", "/api/auth/me")
        check("the session ended on A too", st == 401, f"{st} {j}")

        # Runs made on A are listed on B, and each of A's jobs finishes once (B ran none of them).
        deadline = time.monotonic() + 240
        finished = {}
        while time.monotonic() < deadline and len(finished) < len(run_ids):
            for rid in run_ids:
                st, j, _ = Client(b.port).request("GET", f"/api/runs/{rid}")
                if st == 200 and j["status"] in ("finished", "failed", "cancelled"):
                    finished[rid] = {k: j[k] for k in ("status", "steps_done", "error", "attempts")}
            time.sleep(0.5)
        check("A's jobs finish, read on B", len(finished) == len(run_ids) and
              all(r["status"] == "finished" for r in finished.values()), str(finished)[:400])
        check("A's jobs ran once each", all(r.get("steps_done") == job["steps"] and r.get("attempts") == 1
                                            for r in finished.values()), str(finished)[:400])
        st, j, _ = Client(b.port).request("GET", "/api/runs")
        listed = [r["id"] for r in (j or {}).get("runs", [])]
        check("B lists A's runs", st == 200 and all(rid in listed for rid in run_ids), f"{st} {str(j)[:300]}")

        # Cancel from the other replica: a long job submitted on A, running on either, cancelled through B by
        # its owner (the same address), stops after its step; a watcher on A sees the end.
        st, j, _ = Client(a.port).request("POST", "/api/runs", {"task": "copy", "steps": 20000, "config": {"n_layers": 1}})
        check("a long job submitted on A", st == 202, f"{st} {j}")
        long_id = j["run_id"] if st == 202 else 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st, j, _ = Client(b.port).request("GET", f"/api/runs/{long_id}")
            if st == 200 and j["status"] == "running" and j["steps_done"] > 0:
                break
            time.sleep(0.1)
        st, j, _ = Client(b.port).request("DELETE", f"/api/runs/{long_id}")
        check("cancel through B a job submitted on A", st == 202 and j["status"] == "cancelling", f"{st} {j}")
        _, _, end = read_events(a.port, long_id, timeout=30)
        check("the watcher on A sees it end cancelled", end is not None and end["status"] == "cancelled", str(end))
    except Exception as e:  # a server that did not start, a connection refused: a failure, named
        check("the test ran to its end", False, repr(e))
    finally:
        for s in servers:
            s.stop()
        for s in servers:
            if s.proc.returncode not in (0, None, -15):
                check(f"{s.name} stopped cleanly", False, f"exit status {s.proc.returncode}: {' | '.join(s.lines[-3:])}")
        shutil.rmtree(folder, ignore_errors=True)
        database.close()
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
