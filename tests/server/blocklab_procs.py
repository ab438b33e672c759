"""What the multi-process integration tests share (Python's standard library, and Debian's psql): a blocklab
process with its stderr kept, a browser-like HTTP client (session cookie, CSRF token), a fresh database on the
tests' PostgreSQL server, and PASS/FAIL checks. Used by replicas_test.py, scale_out_test.py and
deploy_nginx_test.py."""

import http.client
import json
import os
import re
import signal
import subprocess
import threading

HOST = "127.0.0.1"


class Proc:
    """A blocklab process (serve or worker) started in `folder`, ready once a stderr line contains `wait_for`;
    `port` is the one a `serve` says it listens on."""

    def __init__(self, args, folder, name, wait_for, timeout=30):
        self.name, self.lines, self.port = name, [], None
        os.makedirs(folder, exist_ok=True)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     cwd=folder, start_new_session=True)
        ready = threading.Event()

        def pump():
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.lines.append(line)
                m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                if wait_for in line:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        ready.wait(timeout)
        if self.proc.poll() is not None or not any(wait_for in l for l in self.lines):
            self.stop(signal.SIGKILL)
            raise RuntimeError(f"{name} did not start: {' | '.join(self.lines[-3:])[:400]}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Client:
    """A browser's worth of state on one server: the session cookie and the CSRF token."""

    def __init__(self, port, cookie="", csrf=""):
        self.port, self.cookie, self.csrf = port, cookie, csrf

    def on(self, port):  # the same browser, sent to another server (as a load balancer would)
        return Client(port, self.cookie, self.csrf)

    def request(self, method, path, body=None, timeout=30):
        """(status, JSON body or None, response)."""
        c = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        headers = {"Host": f"{HOST}:{self.port}"}
        if self.cookie:
            headers["Cookie"] = "blocklab_session=" + self.cookie
        if self.csrf and method != "GET":
            headers["X-CSRF-Token"] = self.csrf
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        raw = r.read()
        c.close()
        set_cookie = r.getheader("Set-Cookie") or ""
        if set_cookie.startswith("blocklab_session="):
            self.cookie = set_cookie[len("blocklab_session="):set_cookie.index(";")]
        try:
            j = json.loads(raw) if raw else None
        except ValueError:
            j = None
        if isinstance(j, dict) and "csrf_token" in j:
            self.csrf = j["csrf_token"]
        return r.status, j, r


def read_events(port, run_id, timeout=120):
    """A run's event stream read to its `end`: (set of steps, status events, end data or None)."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    c.request("GET", f"/api/runs/{run_id}/events", headers={"Host": f"{HOST}:{port}"})
    steps, statuses, end, event = set(), [], None, None
    for raw in c.getresponse():
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            if event == "step":
                steps.add(data["step"])
            elif event == "status":
                statuses.append(data)
            elif event == "end":
                end = data
                break
    c.close()
    return steps, statuses, end


class Checks:
    """PASS/FAIL lines; `failed` collects the labels that failed."""

    def __init__(self):
        self.failed = []

    def __call__(self, label, cond, why=""):
        print(("PASS " if cond else "FAIL ") + label + ("" if cond else f": {why}"), flush=True)
        if not cond:
            self.failed.append(label)
        return bool(cond)

    def summary(self):
        print(f"{'FAILED' if self.failed else 'ok'}: {len(self.failed)} failed")
        return 1 if self.failed else 0


class Database:
    """A fresh database on the tests' PostgreSQL server (BLOCKLAB_TEST_POSTGRES, from ctest's postgres fixture),
    dropped by close(). `url` is None, and `why` says why, when it cannot be made."""

    def __init__(self, prefix):
        self.admin = os.environ.get("BLOCKLAB_TEST_POSTGRES", "")
        self.name = f"{prefix}_{os.getpid()}"
        self.url, self.why = None, None
        if not self.admin:
            self.why = ("BLOCKLAB_TEST_POSTGRES is not set (run through ctest, whose postgres fixture starts the "
                        "server, or scripts/test_postgres.sh start DIR)")
            return
        made = subprocess.run(["psql", self.admin, "-v", "ON_ERROR_STOP=1", "-qc", f"CREATE DATABASE {self.name}"],
                              capture_output=True, text=True)
        if made.returncode != 0:
            self.why = f"cannot make a database on the tests' PostgreSQL: {made.stderr.strip()}"
            return
        self.url = self.admin.replace("/postgres?", f"/{self.name}?", 1)

    def psql(self, sql):
        return subprocess.run(["psql", self.url, "-Atc", sql], capture_output=True, text=True)

    def close(self):
        if self.admin:
            subprocess.run(["psql", self.admin, "-qc", f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"],
                           capture_output=True)
