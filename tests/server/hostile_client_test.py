#!/usr/bin/python3
"""Hostile-client test of `blocklab serve` (Python 3 standard library only).

Starts the real server on 127.0.0.1 (port 0, scratch store and uploads folder), throws malformed, slow,
oversized and cross-site requests at it, and checks the behaviour docs/api.md specifies for them: a JSON
error `{"error": {"code", "message", "field"}}` with the right 4xx/5xx status, never a 500, never a crash.
After every case the server(s) the case used must still be alive and answer GET /api/health with 200
within 2 s.

    /usr/bin/python3 tests/server/hostile_client_test.py --blocklab build/blocklab --source-dir . [--only a,b,...]

Every case prints `PASS name` or `FAIL name: why`; the last line is `N passed, N failed`; exit status 1 if
any case failed. Every loop is bounded in count and time; nothing leaves loopback.
"""

import argparse
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
T0 = time.monotonic()


# ---------------------------------------------------------------------------------------------------
# Failures


class Fail(Exception):
    """A case's requirement that does not hold (stops the case)."""


class Case:
    """What one case collects: its failures (it goes on after a `check`, stops at a `require`) and the
    servers it started (checked and stopped when it ends)."""

    def __init__(self, name):
        self.name = name
        self.errors = []
        self.servers = []

    def check(self, cond, msg):
        if not cond:
            self.errors.append(msg)
        return bool(cond)

    def require(self, cond, msg):
        if not cond:
            raise Fail(msg)


# ---------------------------------------------------------------------------------------------------
# HTTP on raw sockets (so that the test controls every byte, and no library retries or fixes anything)


class Resp:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name -> value (the last one wins)
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None

    def short(self):
        b = self.body[:200].decode("utf-8", "replace").replace("\n", " ")
        return f"{self.status} {b!r}"


class HttpError(Exception):
    pass


def connect(port, timeout=5.0):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Reader:
    """Reads responses off one socket, each before a deadline."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise HttpError("timed out waiting for the response")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise HttpError("timed out waiting for the response")
        except (ConnectionResetError, BrokenPipeError) as e:
            raise HttpError(f"connection reset ({e.__class__.__name__})")
        if not chunk:
            self.eof = True
            raise HttpError("connection closed without a (complete) response")
        self.buf += chunk

    def read_until(self, sep, deadline, limit=1 << 20):
        while sep not in self.buf:
            if len(self.buf) > limit:
                raise HttpError("response head too long")
            self._fill(deadline)
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_n(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, deadline, method="GET", skip_interim=True):
        while True:
            head = self.read_until(b"\r\n\r\n", deadline)
            lines = head.decode("latin-1").split("\r\n")
            m = re.match(r"HTTP/1\.[01] (\d{3}) ?(.*)", lines[0])
            if not m:
                raise HttpError(f"not an HTTP response: {lines[0][:80]!r}")
            status = int(m.group(1))
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            if 100 <= status < 200:
                if skip_interim:
                    continue
                return Resp(status, m.group(2), headers, b"", head)
            break
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size_line = self.read_until(b"\r\n", deadline)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.read_until(b"\r\n", deadline)  # (no trailers expected)
                    break
                body += self.read_n(size, deadline)
                self.read_n(2, deadline)
        elif "content-length" in headers:
            body = self.read_n(int(headers["content-length"]), deadline)
        else:
            while not self.eof:
                try:
                    self._fill(deadline)
                except HttpError:
                    if self.eof:
                        break
                    raise
            body, self.buf = self.buf, b""
        return Resp(status, m.group(2), headers, body, head)


def build_request(port, method, path, body=None, headers=None, host=None, close=True, ctype="application/json"):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    h = {"Host": host if host is not None else f"{HOST}:{port}"}
    if body is not None:
        if ctype:
            h["Content-Type"] = ctype
        h["Content-Length"] = str(len(body))
    if close:
        h["Connection"] = "close"
    for k, v in (headers or {}).items():
        if v is None:
            h.pop(k, None)
        else:
            h[k] = v
    path_bytes = path if isinstance(path, bytes) else path.encode("latin-1")
    head = method.encode() + b" " + path_bytes + b" HTTP/1.1\r\n"
    head += b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in h.items()) + b"\r\n"
    return head + (body or b"")


def send_and_read(sock, data, deadline, method="GET"):
    """Sends `data`, but stops sending as soon as the server answers (a server that refuses a request
    early may close its side; writing on would only earn a reset that hides its answer)."""
    sock.setblocking(False)
    view = memoryview(data)
    try:
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HttpError("timed out sending the request")
            r, w, _ = select.select([sock], [sock], [], left)
            if r:
                break  # an answer (or a close) came before the whole request was sent
            if w:
                try:
                    n = sock.send(view[:65536])
                except (BlockingIOError, InterruptedError):
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
                view = view[n:]
    finally:
        sock.setblocking(True)
    return Reader(sock).read_response(deadline, method)


def http(port, method, path, body=None, headers=None, host=None, timeout=5.0, ctype="application/json"):
    """One request on a fresh connection (Connection: close); raises HttpError when no answer comes."""
    deadline = time.monotonic() + timeout
    try:
        s = connect(port, timeout)
    except OSError as e:
        raise HttpError(f"cannot connect: {e}")
    try:
        return send_and_read(s, build_request(port, method, path, body, headers, host, True, ctype), deadline, method)
    except OSError as e:
        raise HttpError(f"{e.__class__.__name__}: {e}")
    finally:
        s.close()


def try_http(*args, **kwargs):
    try:
        return http(*args, **kwargs), None
    except HttpError as e:
        return None, str(e)


def error_code(resp):
    j = resp.json() if resp is not None else None
    if isinstance(j, dict) and isinstance(j.get("error"), dict):
        return j["error"].get("code")
    return None


def check_error(case, resp, err, what, statuses, codes=None, name_in_message=None):
    """`resp` must be a JSON error with one of `statuses` (and one of `codes`); never a 500."""
    if resp is None:
        case.errors.append(f"{what}: no answer ({err})")
        return False
    if isinstance(statuses, int):
        statuses = (statuses,)
    problems = []
    if resp.status not in statuses:
        problems.append(f"status {resp.status}, expected {'/'.join(map(str, statuses))}")
    j = resp.json()
    e = j.get("error") if isinstance(j, dict) else None
    if not isinstance(e, dict) or not all(k in e for k in ("code", "message", "field")):
        problems.append("body is not {\"error\": {\"code\", \"message\", \"field\"}}")
    else:
        if codes and e.get("code") not in codes:
            problems.append(f"code {e.get('code')!r}, expected {'/'.join(codes)}")
        if name_in_message and name_in_message not in str(e.get("message")):
            problems.append(f"message {str(e.get('message'))[:120]!r} does not name {name_in_message}")
    if problems:
        case.errors.append(f"{what}: " + "; ".join(problems) + f" (got {resp.short()})")
        return False
    return True


# ---------------------------------------------------------------------------------------------------
# The server


class StartError(Exception):
    pass


def ignore_sigxfsz():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


class Server:
    def __init__(self, opts, folder, args=(), quiet=True, db=None, uploads=None, preexec=None, name="server"):
        self.opts = opts
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.db = db or os.path.join(folder, "runs.db")
        self.uploads = uploads or os.path.join(folder, "uploads")
        self.args = list(args)
        self.quiet = quiet
        self.preexec = preexec
        self.name = name
        self.proc = None
        self.port = None
        self.lines = []
        self.nlines = 0

    def start(self, timeout=20.0):
        cmd = [self.opts.blocklab, "serve", "--host", HOST, "--port", "0", "--db", self.db, "--uploads", self.uploads,
               "--models", os.path.join(self.opts.source_dir, "models")]
        cmd += (["--quiet"] if self.quiet else []) + self.args
        self.lines, self.nlines, self.port = [], 0, None
        got_port = threading.Event()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     cwd=self.folder, preexec_fn=self.preexec, start_new_session=True)
        proc = self.proc

        def pump():
            for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.nlines += 1
                if len(self.lines) < 4000:
                    self.lines.append(line)
                m = re.search(r"blocklab serve: http://127\.0\.0\.1:(\d+)/", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    got_port.set()
            got_port.set()

        threading.Thread(target=pump, daemon=True).start()
        got_port.wait(timeout)
        if self.port is None:
            try:
                rc = proc.wait(1.0)
            except subprocess.TimeoutExpired:
                rc = None
            tail = " | ".join(self.lines[-3:])
            self.kill()
            raise StartError(f"{self.name} did not start (`{' '.join(cmd[1:])}`: "
                             f"{'exit status ' + str(rc) if rc is not None else 'no listening line in ' + str(timeout) + ' s'}; "
                             f"stderr: {tail[:300]!r})")
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def health_problem(self):
        """None if alive and GET /api/health answers 200 within 2 s, else what is wrong."""
        if not self.alive():
            rc = self.proc.poll() if self.proc else None
            sig = f" (signal {-rc})" if rc is not None and rc < 0 else ""
            return f"{self.name} died, exit status {rc}{sig}; stderr tail: {' | '.join(self.lines[-2:])[:300]!r}"
        r, err = try_http(self.port, "GET", "/api/health", timeout=2.0)
        if r is None:
            return f"{self.name}: GET /api/health: no answer within 2 s ({err})"
        if r.status != 200:
            return f"{self.name}: GET /api/health: {r.short()}"
        return None

    def kill(self, sig=signal.SIGKILL):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def rss_mb(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return 0.0


# ---------------------------------------------------------------------------------------------------
# Model files (safetensors: 8-byte little-endian header length, JSON header, raw data)


def read_safetensors(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n].decode("utf-8")), b[8 + n:]


def safetensors_bytes(header, data, header_text=None):
    text = header_text if header_text is not None else json.dumps(header, separators=(",", ":"))
    raw = text.encode("utf-8")
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def with_tensors(header, data, extra):
    """A copy of (header, data) with tensors added: extra is {name: (shape, fill)} of F32."""
    header = json.loads(json.dumps(header))
    data = bytearray(data)
    for name, (shape, fill) in extra.items():
        n = 1
        for s in shape:
            n *= s
        start = len(data)
        data += struct.pack(f"<{n}f", *([fill] * n))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [start, len(data)]}
    return header, bytes(data)


class Models:
    """Valid small models made by `blocklab init`, to rewrite."""

    def __init__(self, opts, folder):
        self.opts = opts
        self.folder = folder
        self.cache = {}

    def init(self, d_model=8, n_heads=2, d_ff=16, n_layers=1, seed=1):
        key = (d_model, n_heads, d_ff, n_layers, seed)
        if key not in self.cache:
            out = os.path.join(self.folder, "m-%d-%d-%d-%d-%d.safetensors" % key)
            r = subprocess.run([self.opts.blocklab, "init", "--d-model", str(d_model), "--n-heads", str(n_heads),
                                "--d-ff", str(d_ff), "--n-layers", str(n_layers), "--seed", str(seed), "--output", out],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            if r.returncode != 0:
                raise Fail(f"blocklab init failed: {r.stderr.decode('utf-8', 'replace')[:200]}")
            self.cache[key] = read_safetensors(out)
        h, d = self.cache[key]
        return json.loads(json.dumps(h)), d

    def file(self, **kw):
        h, d = self.init(**kw)
        return safetensors_bytes(h, d)


def config_of(header):
    return json.loads(header["__metadata__"]["blocklab.config"])


def set_config(header, **changes):
    c = config_of(header)
    c.update(changes)
    header["__metadata__"]["blocklab.config"] = json.dumps(c)
    return header


def upload(port, body, timeout=10.0, headers=None):
    return try_http(port, "POST", "/api/models", body, headers=headers, timeout=timeout,
                    ctype="application/octet-stream")


def list_uploads(folder):
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        return []


# ---------------------------------------------------------------------------------------------------
# Runs

TINY = {"d_model": 8, "n_heads": 2, "d_ff": 16, "n_layers": 1}


def run_body(steps=30, **kw):
    b = {"task": "copy", "steps": steps, "batch": 4, "seq_len": 8, "config": dict(TINY)}
    b.update(kw)
    return b


def runs_list(port):
    r, err = try_http(port, "GET", "/api/runs", timeout=5.0)
    if r is None or r.status != 200 or not isinstance(r.json(), dict):
        raise Fail(f"GET /api/runs: {r.short() if r else err}")
    return r.json().get("runs", [])


def get_run(port, rid):
    r, err = try_http(port, "GET", f"/api/runs/{rid}", timeout=5.0)
    if r is None or r.status != 200 or not isinstance(r.json(), dict):
        return None
    return r.json()


# ---------------------------------------------------------------------------------------------------
# The cases


def case_a_non_utf8_paths(c, ctx):
    srv = ctx.own(c, "logging server", quiet=False)
    for path in ("/%ff", "/api/%ff%fe", "/%c3%28"):
        r, err = try_http(srv.port, "GET", path, timeout=5.0)
        check_error(c, r, err, f"GET {path}", 404)
        time.sleep(0.2)  # the access log line is written after the answer: a crash there comes a moment later
        if not srv.alive():
            c.errors.append(f"server died after GET {path}")
            break


def case_b_deep_json(c, ctx):
    body = '{"x": ' + "[" * 60000 + "]" * 60000 + "}"
    r, err = try_http(ctx.main.port, "POST", "/api/compute/layernorm", body, timeout=10.0)
    check_error(c, r, err, "60000-deep JSON", 400, ("bad_json",))


def case_c_bad_train_metadata(c, ctx):
    folder = ctx.scratch("c")
    uploads = os.path.join(folder, "uploads")
    srv = ctx.own(c, "server (c)", folder=folder)
    h, d = ctx.models.init(seed=3)
    h["__metadata__"]["blocklab.train"] = '{"step":1,"options":{"task":5}}'
    body = safetensors_bytes(h, d)
    r, err = upload(srv.port, body)
    check_error(c, r, err, "upload with options.task 5", 400, ("bad_model",))
    problem = srv.health_problem()
    c.check(problem is None, f"after the upload: {problem}")
    left = list_uploads(uploads)
    c.check(not left, f"files left in the uploads folder after the refused upload: {left}")
    srv.stop()
    with open(os.path.join(uploads, "by-hand.safetensors"), "wb") as f:
        f.write(body)
    try:
        srv.start()
    except StartError as e:
        c.errors.append(f"restart with the bad file in uploads/: {e}")
        return
    problem = srv.health_problem()
    c.check(problem is None, f"restart with the bad file in uploads/: {problem}")


def case_d_huge_numbers(c, ctx):
    h, d = ctx.models.init(seed=4)
    h["layers.0.norm1.bias"]["shape"] = "SHAPE"
    bad = json.dumps(h, separators=(",", ":")).replace('"SHAPE"', "[1e400]", 1)
    r, err = upload(ctx.main.port, safetensors_bytes(None, d, header_text=bad))
    check_error(c, r, err, "header shape [1e400]", 400)

    h, d = ctx.models.init(seed=4)
    cfg = h["__metadata__"]["blocklab.config"]
    cfg2 = re.sub(r'"eps":\s*[^,}]+', '"eps":1e99999', cfg)
    if cfg2 == cfg:
        cfg2 = cfg.rstrip("}") + ',"eps":1e99999}'
    h["__metadata__"]["blocklab.config"] = cfg2
    r, err = upload(ctx.main.port, safetensors_bytes(h, d))
    check_error(c, r, err, "config eps 1e99999", 400)


def case_e_huge_config(c, ctx):
    srv = ctx.main
    peak = [srv.rss_mb()]
    killed = [False]
    stop = threading.Event()

    def sample():  # and kill the server once it passes 500 MB: the machine is shared
        while not stop.is_set():
            peak[0] = max(peak[0], srv.rss_mb())
            if peak[0] >= 500 and srv.alive():
                srv.proc.kill()
                killed[0] = True
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        for key, value in (("n_layers", 2 ** 53), ("d_model", 2 ** 32)):
            h, d = ctx.models.init(seed=5)
            set_config(h, **{key: value})
            t0 = time.monotonic()
            r, err = upload(srv.port, safetensors_bytes(h, d), timeout=2.0)
            dt = time.monotonic() - t0
            if check_error(c, r, err, f"config {key} = {value}", 400):
                c.check(dt < 2.0, f"config {key} = {value}: answered in {dt:.1f} s, expected < 2 s")
            if not srv.alive():
                break
    finally:
        stop.set()
        t.join()
    if srv.alive():
        peak[0] = max(peak[0], srv.rss_mb())
    c.check(peak[0] < 500, f"server RSS reached {peak[0]:.0f} MB, expected < 500 MB"
                           + (" (the test killed it there)" if killed[0] else ""))
    c.servers_killed_on_purpose = killed[0]


def case_f_vocab_beyond_alphabet(c, ctx):
    h, d = ctx.models.init(seed=6)
    dm = config_of(h)["d_model"]
    h, d = with_tensors(h, d, {"embed.weight": ([10, dm], 0.01), "head.weight": ([10, dm], 0.01),
                               "head.bias": ([10], 0.0)})
    set_config(h, vocab_size=10)
    h["__metadata__"]["blocklab.train"] = json.dumps({"alphabet": "ab", "step": 1, "options": {"task": "chars"}})
    r, err = upload(ctx.main.port, safetensors_bytes(h, d))
    if r is None:
        c.errors.append(f"upload: no answer ({err})")
        return
    # Refused at upload: an alphabet shorter than the vocabulary would make predictions read past it.
    check_error(c, r, err, "upload of a model whose vocab_size exceeds its alphabet", 400)
    if r.status == 400:
        msg = (r.json() or {}).get("error", {}).get("message", "")
        c.check("alphabet" in msg, f"upload refused, but the message does not name the alphabet: {msg[:120]!r}")


def has_null(v):
    if v is None:
        return True
    if isinstance(v, dict):
        return any(has_null(x) for x in v.values())
    if isinstance(v, list):
        return any(has_null(x) for x in v)
    return False


def case_g_float_overflow(c, ctx):
    r, err = try_http(ctx.main.port, "POST", "/api/compute/layernorm", {"x": [[1e39, 1, 2]]}, timeout=5.0)
    check_error(c, r, err, "layernorm x = [[1e39, 1, 2]]", 400, name_in_message="x[0][0]")
    r, err = try_http(ctx.main.port, "POST", "/api/compute/rmsnorm", {"x": [[1e20, 1e20, 1e20]]}, timeout=5.0)
    if r is None:
        c.errors.append(f"rmsnorm x = [[1e20]*3]: no answer ({err})")
        return
    j = r.json()
    if not c.check(r.status == 200 and isinstance(j, dict), f"rmsnorm x = [[1e20]*3]: expected 200, got {r.short()}"):
        return
    c.check(not has_null(j), "rmsnorm x = [[1e20]*3]: the answer has nulls: " + r.body[:300].decode("utf-8", "replace"))
    out = j.get("out")
    row = out[0] if isinstance(out, list) and out and isinstance(out[0], list) else out
    ok = isinstance(row, list) and len(row) == 3 and all(isinstance(v, (int, float)) and abs(v - 1) < 1e-3 for v in row)
    c.check(ok, f"rmsnorm x = [[1e20]*3]: out = {json.dumps(out)[:120]}, expected all ≈ 1")


def case_h_slow_clients(c, ctx):
    header_timeout = 3
    srv = ctx.own(c, "server (h)", args=["--threads", "8", "--header-timeout", str(header_timeout)])
    port = srv.port
    n_slow, n_watch = 24, 24
    give_up = header_timeout + 5  # a slow client stops trickling after this many seconds
    slow = [None] * n_slow  # per client: (closed after s, status line or None) or None while connected
    watch_state = [None] * n_watch  # per watcher: "connected", "ended", "error: ..."
    stop = threading.Event()

    def slow_client(i):
        t0 = time.monotonic()
        try:
            s = connect(port, 5.0)
        except OSError as e:
            slow[i] = (0.0, f"connect failed: {e}")
            return
        try:
            s.sendall(f"GET /api/health HTTP/1.1\r\nHost: {HOST}:{port}\r\nX-Slow: ".encode())
            s.settimeout(1.0)
            got = b""
            while time.monotonic() - t0 < give_up and not stop.is_set():
                try:
                    chunk = s.recv(4096)
                    if not chunk:
                        slow[i] = (time.monotonic() - t0, got.split(b"\r\n")[0].decode("latin-1") or None)
                        return
                    got += chunk
                    continue
                except socket.timeout:
                    pass
                except OSError:
                    slow[i] = (time.monotonic() - t0, got.split(b"\r\n")[0].decode("latin-1") or None)
                    return
                try:
                    s.send(b"a")
                except OSError:
                    slow[i] = (time.monotonic() - t0, got.split(b"\r\n")[0].decode("latin-1") or None)
                    return
            slow[i] = (None, "still open after %d s" % give_up)
        finally:
            s.close()

    def watcher(i, rid):
        try:
            s = connect(port, 5.0)
        except OSError as e:
            watch_state[i] = f"error: connect: {e}"
            return
        try:
            s.sendall(build_request(port, "GET", f"/api/runs/{rid}/events", close=False))
            watch_state[i] = "connected"
            s.settimeout(0.5)
            t0 = time.monotonic()
            while not stop.is_set() and time.monotonic() - t0 < 15:
                try:
                    chunk = s.recv(256)  # slowly: a little, then a pause
                    if not chunk:
                        watch_state[i] = "ended"
                        return
                except socket.timeout:
                    pass
                time.sleep(0.3)
        except OSError as e:
            watch_state[i] = f"error: {e}"
        finally:
            s.close()

    threads = [threading.Thread(target=slow_client, args=(i,), daemon=True) for i in range(n_slow)]
    t_start = time.monotonic()
    for t in threads:
        t.start()
    try:
        r, err = try_http(port, "POST", "/api/runs", run_body(steps=2000, config={"d_model": 16, "n_heads": 2,
                                                                                 "d_ff": 32, "n_layers": 1}), timeout=2.0)
        rid = r.json().get("run_id") if r is not None and r.status == 202 and isinstance(r.json(), dict) else None
        c.check(rid is not None, f"POST /api/runs while slow clients are connected: {r.short() if r else err}")
        if rid is not None:
            for i in range(n_watch):
                t = threading.Thread(target=watcher, args=(i, rid), daemon=True)
                t.start()
                threads.append(t)
            time.sleep(0.3)
        connected_slow = sum(1 for x in slow if x is None)
        connected_watch = sum(1 for x in watch_state if x == "connected")
        for kind, call in (("GET /api/health", lambda: try_http(port, "GET", "/api/health", timeout=1.0)),
                           ("POST /api/compute/layernorm",
                            lambda: try_http(port, "POST", "/api/compute/layernorm", {"x": [[1, 2, 3]]}, timeout=1.0))):
            for attempt in range(10):
                t0 = time.monotonic()
                r, err = call()
                dt = time.monotonic() - t0
                if r is None or r.status != 200 or dt > 1.0:
                    c.errors.append(f"{kind} with {connected_slow} slow clients and {connected_watch} watchers "
                                    f"connected, try {attempt + 1}: {r.short() if r else err} after {dt:.1f} s")
                    break  # one miss is enough (and keeps the case short)
        # Every slow client must be closed within header-timeout + 2 s.
        deadline = t_start + give_up + 2
        for t in threads[:n_slow]:
            t.join(max(0.0, deadline - time.monotonic()))
        limit = header_timeout + 2
        late = [x for x in slow if x is None or x[0] is None or x[0] > limit + 0.5]
        if late:
            sample = next((x for x in late if x is not None), None)
            c.errors.append(f"{len(late)} of {n_slow} slow clients not closed within {limit} s "
                            f"(e.g. {sample[1] if sample else 'still running'})")
        got_408 = sum(1 for x in slow if x and x[1] and " 408" in x[1])
        if not late and got_408 < n_slow:
            print(f"  note: {got_408} of {n_slow} slow clients got a 408 before the close", flush=True)
        if rid is not None:
            r, err = try_http(port, "DELETE", f"/api/runs/{rid}", timeout=5.0)
            c.check(r is not None and r.status in (200, 202), f"DELETE /api/runs/{rid}: {r.short() if r else err}")
    finally:
        stop.set()
        for t in threads:
            t.join(2.0)


def case_i_conn_cap(c, ctx):
    srv = ctx.own(c, "server (i)", args=["--max-conns-per-addr", "40"])
    socks = []
    try:
        for _ in range(40):
            socks.append(connect(srv.port, 5.0))
        time.sleep(0.3)
        t0 = time.monotonic()
        try:
            s41 = connect(srv.port, 2.0)
            try:
                r = send_and_read(s41, build_request(srv.port, "GET", "/api/health"), time.monotonic() + 2.0)
                if r.status == 503:
                    check_error(c, r, None, "41st connection", 503, ("too_many_connections",))
                else:
                    c.errors.append(f"41st connection: expected 503 too_many_connections or a prompt close, got {r.short()}")
            except HttpError as e:
                if "timed out" in str(e):
                    c.errors.append(f"41st connection: neither answered nor closed within 2 s ({e})")
                # else: closed (or reset) promptly: allowed
            finally:
                s41.close()
        except OSError as e:
            if time.monotonic() - t0 > 2.0:
                c.errors.append(f"41st connection: connect hung: {e}")
    finally:
        for s in socks:
            s.close()
    time.sleep(0.5)
    for k in range(3):
        r, err = try_http(srv.port, "GET", "/api/health", timeout=2.0)
        c.check(r is not None and r.status == 200, f"after closing the 40, request {k + 1}: {r.short() if r else err}")


STILL = ("queued", "running")


def case_j_restart_recovery(c, ctx):
    folder = ctx.scratch("j")
    srv = ctx.own(c, "server (j)", folder=folder, args=["--max-jobs", "1", "--max-jobs-anonymous", "3"])
    body = run_body(steps=30, config={"d_model": 32, "n_heads": 2, "d_ff": 64, "n_layers": 2}, batch=16, seq_len=16)
    ids = []
    for _ in range(3):
        r, err = try_http(srv.port, "POST", "/api/runs", body, timeout=5.0)
        c.require(r is not None and r.status == 202, f"POST /api/runs: {r.short() if r else err}")
        ids.append(r.json()["run_id"])
    before = {r["id"]: r["status"] for r in runs_list(srv.port) if r["id"] in ids}
    srv.kill(signal.SIGKILL)
    try:
        srv.start()
    except StartError as e:
        raise Fail(f"restart after SIGKILL: {e}")
    # DELETE one the restart re-queued (if any).
    deleted = None
    runs = {r["id"]: r for r in runs_list(srv.port) if r["id"] in ids}
    for rid in ids:
        if runs.get(rid, {}).get("status") == "queued":
            r, err = try_http(srv.port, "DELETE", f"/api/runs/{rid}", timeout=5.0)
            c.check(r is not None and r.status == 200 and r.json().get("status") == "cancelled",
                    f"DELETE re-queued run {rid}: {r.short() if r else err}")
            deleted = rid
            break
    t0 = time.monotonic()
    last_change, last = time.monotonic(), None
    while time.monotonic() - t0 < 60:
        runs = {r["id"]: r for r in runs_list(srv.port) if r["id"] in ids}
        state = tuple((rid, runs.get(rid, {}).get("status"), runs.get(rid, {}).get("steps_done")) for rid in ids)
        if state != last:
            last, last_change = state, time.monotonic()
        if all(s not in STILL for _, s, _ in state):
            break
        if time.monotonic() - last_change > 15:
            break  # nothing moved for 15 s: stuck
        time.sleep(0.5)
    stuck = [f"run {rid} {s} (steps {n})" for rid, s, n in last if s in STILL]
    c.check(not stuck, f"{time.monotonic() - t0:.0f} s after the restart still not finished: {', '.join(stuck)} "
                       f"(before the kill: {before})")
    for rid, s, _ in last:
        rec = runs.get(rid, {})
        if s == "failed":
            msg = str(rec.get("error") or rec.get("message") or "")
            c.check("stop" in msg.lower() or "restart" in msg.lower() or "server" in msg.lower(),
                    f"run {rid} failed with message {msg[:100]!r}, expected one saying the server stopped")
        elif s == "cancelled":
            c.check(rid == deleted, f"run {rid} ended cancelled, but only run {deleted} was cancelled")
        elif s not in STILL:
            c.check(s == "finished", f"run {rid} ended {s!r}, expected finished, failed (server stopped) or cancelled")


def case_k_full_disk(c, ctx):
    folder = ctx.scratch("k")
    uploads = os.path.join(folder, "uploads")
    srv = ctx.own(c, "server (k)", folder=folder, preexec=ignore_sigxfsz)
    big = ctx.models.file(d_model=128, n_heads=4, d_ff=512, n_layers=2, seed=11)  # about 1.6 MB

    def set_limit(n):  # soft and hard: the new process a restart makes has the normal limits again
        resource.prlimit(srv.pid, resource.RLIMIT_FSIZE, (n, n))

    def largest_file():
        m = 0
        for root, _, files in os.walk(folder):
            for f in files:
                try:
                    m = max(m, os.path.getsize(os.path.join(root, f)))
                except OSError:
                    pass
        return m

    # One small run first, so the store has its tables and pages.
    r, err = try_http(srv.port, "POST", "/api/runs", run_body(steps=5), timeout=5.0)
    c.require(r is not None and r.status == 202, f"POST /api/runs: {r.short() if r else err}")
    time.sleep(1.0)
    limit = largest_file() + 256 * 1024
    c.require(limit < len(big), f"the store is already {limit} bytes: the test's upload is too small")
    set_limit(limit)
    r, err = upload(srv.port, big, timeout=10.0)
    if r is None:
        c.errors.append(f"upload over the room left: no answer ({err})")
    elif r.status == 507 or (400 <= r.status < 600 and r.status != 500):  # 507 storage_full, or a similar error
        check_error(c, r, err, "upload over the room left", r.status)
    else:
        c.errors.append(f"upload over the room left: expected 507 (or a 4xx/5xx JSON error, not 500), got {r.short()}")
    left = list_uploads(uploads)
    c.check(not left, f"files left in the uploads folder after the failed upload: {left}")

    r, err = try_http(srv.port, "POST", "/api/runs", run_body(steps=20000, grad_norm_every=1), timeout=5.0)
    if not c.check(r is not None and r.status == 202, f"POST /api/runs with the store almost full: "
                                                      f"{r.short() if r else err}"):
        return
    rid = r.json()["run_id"]
    status = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        rec = get_run(srv.port, rid)
        status = rec.get("status") if rec else None
        if status not in STILL:
            break
        time.sleep(0.5)
    if status == "failed":
        return
    if status == "finished":
        c.errors.append(f"run {rid} ended finished: the store never filled (or its writes were dropped silently)")
        return
    if status not in STILL and status is not None:
        c.errors.append(f"run {rid} ended {status!r}, expected failed")
        return
    # Not ended live: lift the limit, restart on the same store; it must not stay running for ever.
    live = f"run {rid} still {status!r} 20 s after its store filled"
    srv.kill(signal.SIGKILL)
    try:
        srv.start()
    except StartError as e:
        c.errors.append(f"{live}; restart: {e}")
        return
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        rec = get_run(srv.port, rid)
        status = rec.get("status") if rec else None
        if status not in STILL:
            break
        time.sleep(0.5)
    if status in STILL or status is None:
        c.errors.append(f"{live}, and still {status!r} 10 s after a restart with the limit lifted")
    else:
        print(f"  note: {live}; after a restart it is {status!r}", flush=True)


def case_l_cross_site(c, ctx):
    port = ctx.main.port
    body = json.dumps(run_body(steps=5)).encode()
    n0 = len(runs_list(port))
    refused = [
        ("Content-Type text/plain", dict(ctype="text/plain"), (415,), None),
        ("Content-Type application/x-www-form-urlencoded", dict(ctype="application/x-www-form-urlencoded"), (415,), None),
        ("Origin: http://evil.example", dict(headers={"Origin": "http://evil.example"}), (403,), ("forbidden_origin",)),
        ("Host: evil.example", dict(host="evil.example"), (421, 403), None),
    ]
    for what, kw, statuses, codes in refused:
        r, err = try_http(port, "POST", "/api/runs", body, timeout=5.0, **kw)
        check_error(c, r, err, f"POST /api/runs with {what}", statuses, codes)
    accepted = 0
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        r, err = try_http(port, "POST", "/api/runs", body, host=host, timeout=5.0)
        if c.check(r is not None and r.status == 202, f"POST /api/runs with Host: {host}: {r.short() if r else err}"):
            accepted += 1
    n1 = len(runs_list(port))
    c.check(n1 - n0 == accepted, f"{n1 - n0} runs created, expected {accepted} (the refused requests created runs)")
    r, err = try_http(port, "PUT", "/api/runs", body, timeout=5.0)
    if check_error(c, r, err, "PUT /api/runs", 405):
        c.check(r.header("Allow"), "PUT /api/runs: 405 without an Allow header")

    srv = ctx.own(c, "server (l, CORS)", args=["--cors-origin", "http://app.example"])
    r, err = try_http(srv.port, "OPTIONS", "/api/runs", timeout=5.0,
                      headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
                               "Access-Control-Request-Headers": "content-type"})
    if r is None:
        c.errors.append(f"CORS preflight: no answer ({err})")
    else:
        c.check(r.status == 204 and r.header("Access-Control-Allow-Origin") == "http://app.example",
                f"CORS preflight: expected 204 with Access-Control-Allow-Origin: http://app.example, got "
                f"{r.status} with {r.header('Access-Control-Allow-Origin')!r}")
    r, err = try_http(srv.port, "POST", "/api/runs", body, headers={"Origin": "http://app.example"}, timeout=5.0)
    c.check(r is not None and r.status == 202, f"POST /api/runs from the allowed origin: {r.short() if r else err}")


def case_m_big_headers(c, ctx):
    port = ctx.main.port
    sets = [
        ("200 headers of 1 KB", {f"X-Big-{i}": "a" * 1024 for i in range(200)}),
        ("one 20 KB header", {"X-Huge": "a" * 20 * 1024}),
        ("10000 tiny headers", {f"X-{i}": "a" for i in range(10000)}),
    ]
    for what, headers in sets:
        r, err = try_http(port, "GET", "/api/health", headers=headers, timeout=5.0)
        check_error(c, r, err, what, 431)
        if not ctx.main.alive():
            c.errors.append(f"server died on {what}")
            return


def case_n_upload_quota(c, ctx):
    folder = ctx.scratch("n")
    uploads = os.path.join(folder, "uploads")
    srv = ctx.own(c, "server (n)", folder=folder, args=["--max-uploads", "3", "--max-upload-bytes", "100000"])
    ids = []
    for seed in (21, 22, 23, 24):
        r, err = upload(srv.port, ctx.models.file(seed=seed))
        if len(ids) < 3:
            j = r.json() if r is not None else None
            if c.check(r is not None and r.status == 201 and isinstance(j, dict), f"upload {len(ids) + 1}: "
                                                                                  f"{r.short() if r else err}"):
                c.check(isinstance(j.get("delete_token"), str) and j["delete_token"],
                        f"upload {len(ids) + 1}: the 201 answer has no delete_token")
                ids.append((j.get("id"), j.get("delete_token")))
            else:
                return
        else:
            check_error(c, r, err, "4th upload", 507, ("upload_quota",))
    (id1, tok1), (id2, tok2) = ids[0], ids[1]
    r, err = try_http(srv.port, "DELETE", f"/api/models/{id2}", headers={"X-Delete-Token": "wrong" + str(tok2)},
                      timeout=5.0)
    check_error(c, r, err, "DELETE with a wrong token", 403)
    n_before = len([f for f in list_uploads(uploads) if f.endswith(".safetensors")])
    r, err = try_http(srv.port, "DELETE", f"/api/models/{id1}", headers={"X-Delete-Token": str(tok1)}, timeout=5.0)
    if c.check(r is not None and r.status == 204, f"DELETE with the right token: {r.short() if r else err}"):
        c.check(len([f for f in list_uploads(uploads) if f.endswith(".safetensors")]) == n_before - 1
                and not any(f.startswith(id1) for f in list_uploads(uploads)), f"after DELETE the uploads folder still has "
                                                           f"{list_uploads(uploads)}")
        r, err = try_http(srv.port, "GET", f"/api/models/{id1}", timeout=5.0)
        c.check(r is not None and r.status == 404, f"GET a deleted model: {r.short() if r else err}")
    r, err = try_http(srv.port, "GET", "/api/models", timeout=5.0)
    builtin = [m["id"] for m in (r.json() or {}).get("models", []) if m.get("source") == "builtin"] if r else []
    if c.check(builtin, "no builtin model listed"):
        r, err = try_http(srv.port, "DELETE", f"/api/models/{builtin[0]}", headers={"X-Delete-Token": str(tok2)},
                          timeout=5.0)
        check_error(c, r, err, f"DELETE builtin {builtin[0]}", 403)
    r, err = upload(srv.port, ctx.models.file(seed=25))
    c.check(r is not None and r.status == 201, f"upload after a delete: {r.short() if r else err}")
    r, err = upload(srv.port, os.urandom(200000))
    check_error(c, r, err, "200000-byte upload over --max-upload-bytes 100000", 413)


def case_o_expect_and_pipelining(c, ctx):
    port = ctx.main.port
    body = ctx.models.file(seed=31)
    s = connect(port, 5.0)
    try:
        deadline = time.monotonic() + 5.0
        head = build_request(port, "POST", "/api/models", body, headers={"Expect": "100-continue"},
                             ctype="application/octet-stream")
        head = head[:len(head) - len(body)]
        s.sendall(head)
        rd = Reader(s)
        try:
            interim = rd.read_response(time.monotonic() + 2.0, skip_interim=False)
        except HttpError as e:
            interim = None
            c.errors.append(f"Expect: 100-continue: no 100 Continue within 2 s ({e})")
        if interim is None or interim.status == 100:
            s.sendall(body)
            r = rd.read_response(deadline)
            c.check(r.status == 201, f"Expect: 100-continue upload: {r.short()}")
        else:
            c.errors.append(f"Expect: 100-continue: got {interim.short()} instead of 100 Continue")
    except (HttpError, OSError) as e:
        c.errors.append(f"Expect: 100-continue upload: {e}")
    finally:
        s.close()

    s = connect(port, 5.0)
    try:
        deadline = time.monotonic() + 5.0
        s.sendall(build_request(port, "GET", "/api/health", close=False) +
                  build_request(port, "POST", "/api/compute/layernorm", {"x": [[1, 2, 3]]}, close=False))
        rd = Reader(s)
        which = "1st (GET /api/health)"
        r1 = rd.read_response(deadline)
        c.check(r1.status == 200 and isinstance(r1.json(), dict) and r1.json().get("status") == "ok",
                f"pipelined GET /api/health: {r1.short()}")
        which = "2nd (POST /api/compute/layernorm)"
        r2 = rd.read_response(deadline)
        c.check(r2.status == 200 and isinstance(r2.json(), dict) and "out" in r2.json(),
                f"pipelined POST /api/compute/layernorm: {r2.short()}")
    except (HttpError, OSError) as e:
        c.errors.append(f"keep-alive pipelining of two requests on one socket: the {which} response: {e}")
    finally:
        s.close()


CASES = [
    ("a", "non_utf8_paths", case_a_non_utf8_paths),
    ("b", "deep_json", case_b_deep_json),
    ("c", "bad_train_metadata", case_c_bad_train_metadata),
    ("d", "huge_numbers", case_d_huge_numbers),
    ("e", "huge_config", case_e_huge_config),
    ("f", "vocab_beyond_alphabet", case_f_vocab_beyond_alphabet),
    ("g", "float_overflow", case_g_float_overflow),
    ("h", "slow_clients", case_h_slow_clients),
    ("i", "conn_cap", case_i_conn_cap),
    ("j", "restart_recovery", case_j_restart_recovery),
    ("k", "full_disk", case_k_full_disk),
    ("l", "cross_site", case_l_cross_site),
    ("m", "big_headers", case_m_big_headers),
    ("n", "upload_quota", case_n_upload_quota),
    ("o", "expect_and_pipelining", case_o_expect_and_pipelining),
]


# ---------------------------------------------------------------------------------------------------
# The harness


class Context:
    def __init__(self, opts, tmp):
        self.opts = opts
        self.tmp = tmp
        self.models = Models(opts, os.path.join(tmp, "models"))
        os.makedirs(self.models.folder)
        self.main = None
        self.n_scratch = 0

    def scratch(self, name):
        self.n_scratch += 1
        p = os.path.join(self.tmp, f"{name}-{self.n_scratch}")
        os.makedirs(p)
        return p

    def start_main(self):
        self.main = Server(self.opts, os.path.join(self.tmp, "main"), name="main server").start()

    def own(self, case, name, folder=None, **kw):
        """A server for one case only; checked and stopped when the case ends."""
        srv = Server(self.opts, folder or self.scratch("srv"), name=name, **kw)
        try:
            srv.start()
        except StartError as e:
            raise Fail(str(e))
        case.servers.append(srv)
        return srv


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocklab", required=True, help="the blocklab executable")
    ap.add_argument("--source-dir", required=True, help="the source tree (for models/)")
    ap.add_argument("--only", help="comma-separated cases to run, by letter or name (e.g. a,h or slow_clients)")
    opts = ap.parse_args()
    opts.blocklab = os.path.abspath(opts.blocklab)
    opts.source_dir = os.path.abspath(opts.source_dir)
    wanted = None
    if opts.only:
        wanted = {w.strip() for w in opts.only.split(",") if w.strip()}
        unknown = wanted - {k for k, _, _ in CASES} - {n for _, n, _ in CASES} - {f"{k}_{n}" for k, n, _ in CASES}
        if unknown:
            print(f"hostile_client_test: --only: unknown case(s) {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2

    passed = failed = 0
    tmp = tempfile.mkdtemp(prefix="blocklab-hostile-")
    ctx = Context(opts, tmp)
    try:
        try:
            ctx.start_main()
        except StartError as e:
            print(f"FAIL start: {e}")
            print("0 passed, 1 failed")
            return 1
        for key, name, fn in CASES:
            full = f"{key}_{name}"
            if wanted and not ({key, name, full} & wanted):
                continue
            c = Case(full)
            t0 = time.monotonic()
            try:
                fn(c, ctx)
            except Fail as e:
                c.errors.append(str(e))
            except Exception as e:  # the test's own bug, or an answer it could not read: a failure, shown
                c.errors.append(f"{e.__class__.__name__}: {e}")
            for srv in [s for s in c.servers] + [ctx.main]:
                if srv.proc is None or (srv is ctx.main and getattr(c, "servers_killed_on_purpose", False)):
                    continue
                problem = srv.health_problem()
                if problem:
                    c.errors.append(f"afterwards: {problem}")
            for srv in c.servers:
                srv.kill(signal.SIGKILL)
            if c.errors:  # a fresh main server for the next case: this one may be left half-broken
                ctx.main.kill(signal.SIGKILL)
                try:
                    ctx.main.start()
                except StartError as e:
                    c.errors.append(f"main server could not be restarted: {e}")
            elif not ctx.main.alive() or ctx.main.health_problem():
                ctx.main.kill(signal.SIGKILL)
                try:
                    ctx.main.start()
                except StartError as e:
                    c.errors.append(f"main server could not be restarted: {e}")
            dt = time.monotonic() - t0
            if c.errors:
                failed += 1
                print(f"FAIL {full}: " + "; ".join(c.errors) + f" (after {dt:.1f} s)", flush=True)
            else:
                passed += 1
                print(f"PASS {full}", flush=True)
    finally:
        if ctx.main is not None:
            ctx.main.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
