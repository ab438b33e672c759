#!/usr/bin/env python3
"""A bounded load test of accounts and comments, on loopback only (docs/accounts.md).

Starts `blocklab serve` on a free port with a scratch store (an SQLite file, or --db a PostgreSQL URL; with
--replicas N, N servers on that one store, each account registered on one and then served by the next, so that
every session and comment crosses servers), registers N accounts, then for a fixed time
each account, in its own thread with its own session, reads a section's comments (new ones since its last
read, as the web app's panel polls) about once a second and posts a comment within the per-account limit
(at most one every 12 s: the server allows 6 a minute). Prints requests, errors, non-2xx answers and the
p50 / p99 / max latency of reads and of posts, then stops everything.

  tools/comments_load.py [--clients 100] [--seconds 60] [--blocklab build/blocklab] [--db postgresql://…] [--replicas 2]

Python's standard library only; every loop is bounded by the time given.
"""
import argparse
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time

from load_stats import percentile

SECTIONS = ["ffn#position-wise", "layernorm#step-by-step", "gradflow#depth", "train#copy-task"]


def start_server(blocklab, folder, db):
    proc = subprocess.Popen([blocklab, "serve", "--port", "0", "--db", db, "--quiet",
                             "--uploads", os.path.join(folder, "uploads"), "--max-conns-per-addr", "1024"],
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, int(m.group(1))
    proc.kill()
    sys.exit("comments_load: the server did not start")


class Client:
    def __init__(self, port, name):
        self.port, self.name = port, name
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookie = self.csrf = ""
        self.after = {}

    def call(self, method, path, body=None):
        headers = {"Host": f"127.0.0.1:{self.port}"}
        if self.cookie:
            headers["Cookie"] = "blocklab_session=" + self.cookie
        if body is not None:
            headers["Content-Type"] = "application/json"
            if self.csrf:
                headers["X-CSRF-Token"] = self.csrf
        data = json.dumps(body) if body is not None else None
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                text = r.read()
                set_cookie = r.getheader("Set-Cookie") or ""
                if set_cookie.startswith("blocklab_session="):
                    self.cookie = set_cookie.split(";")[0].split("=", 1)[1]
                return r.status, (json.loads(text) if text else None)
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt:
                    return 0, None
        return 0, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--blocklab", default=os.path.join(os.path.dirname(__file__), "..", "build", "blocklab"))
    ap.add_argument("--db", default="", help="the store: an empty PostgreSQL database's URL (default: a scratch SQLite file)")
    ap.add_argument("--replicas", type=int, default=1, help="servers on the one store (default 1)")
    a = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="blocklab-comments-load-")
    db = a.db or os.path.join(folder, "load.db")
    servers = [start_server(a.blocklab, folder, db) for _ in range(max(1, a.replicas))]
    ports = [port for _, port in servers]
    print(f"store: {'PostgreSQL' if db.startswith('postgres') else 'SQLite'}; {len(ports)} server(s)")
    try:
        clients = [Client(ports[i % len(ports)], f"student{i:03d}") for i in range(a.clients)]
        t0 = time.monotonic()
        for c in clients:
            status, body = c.call("POST", "/api/auth/register", {"username": c.name, "password": "password " + c.name})
            if status != 201:
                sys.exit(f"comments_load: register {c.name}: {status} {body}")
            c.csrf = body["csrf_token"]
            c.port = ports[(ports.index(c.port) + 1) % len(ports)]  # from now on, the next server
            c.conn.close()
            c.conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=30)
        print(f"registered {a.clients} accounts in {time.monotonic() - t0:.1f} s (argon2id, two hashes at a time)")
        reads, posts, errors, non2xx = [], [], [0], [0]
        lock = threading.Lock()
        end = time.monotonic() + a.seconds

        def work(c, seed):
            rng = random.Random(seed)
            next_post = time.monotonic() + rng.uniform(0, 12)
            while time.monotonic() < end:
                section = rng.choice(SECTIONS)
                q = f"/api/comments?section={section.replace('#', '%23')}&after={c.after.get(section, 0)}"
                t = time.monotonic()
                status, body = c.call("GET", q)
                dt = time.monotonic() - t
                with lock:
                    reads.append(dt)
                    errors[0] += status == 0
                    non2xx[0] += status not in (0, 200)
                if status == 200 and body["comments"]:
                    c.after[section] = body["comments"][-1]["id"]
                if time.monotonic() >= next_post:
                    next_post += 12
                    t = time.monotonic()
                    status, body = c.call("POST", "/api/comments", {"section": section, "body": f"a note from {c.name}, *{rng.random():.3f}*"})
                    dt = time.monotonic() - t
                    with lock:
                        posts.append(dt)
                        errors[0] += status == 0
                        non2xx[0] += status not in (0, 201)
                time.sleep(rng.uniform(0.5, 1.5))

        threads = [threading.Thread(target=work, args=(c, i)) for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ms = lambda v: f"{1000 * v:.1f} ms"
        print(f"{a.clients} signed-in clients for {a.seconds:.0f} s: {len(reads)} reads, {len(posts)} posts; "
              f"errors {errors[0]}, non-2xx {non2xx[0]}")
        print(f"  reads: p50 {ms(percentile(reads, 50))}, p99 {ms(percentile(reads, 99))}, max {ms(max(reads))}")
        print(f"  posts: p50 {ms(percentile(posts, 50))}, p99 {ms(percentile(posts, 99))}, max {ms(max(posts))}")
        return 1 if errors[0] or non2xx[0] else 0
    finally:
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
