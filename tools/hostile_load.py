#!/usr/bin/python3
"""Hostile background load for tools/load_test.sh --hostile (Python 3 standard library only).

Against a running `blocklab serve` on 127.0.0.1:PORT, keeps N slow clients (each sends a request head one
byte per second and never finishes it; when the server closes one, it reconnects) and M watchers of one
training run's event stream (reading slowly; reconnecting when a stream ends) for a fixed time, then
cancels the run and prints what happened:

    hostile: ready (24 slow clients, 24 watchers of run 3)          <- once everything is connected
    hostile: slow clients: 24 of 24 still connected at the end; 0 closed by the server (0 with a 408)
    hostile: watchers: 24 of 24 still connected at the end; 0 streams ended, 0 errors

    tools/hostile_load.py --port PORT --seconds S [--slow 24] [--watchers 24]
"""

import argparse
import json
import socket
import sys
import threading
import time

HOST = "127.0.0.1"


def request(port, method, path, body=None, timeout=5.0):
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s.sendall(head.encode() + b"\r\n" + data)
        got = b""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    finally:
        s.close()
    status = int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/") else 0
    body = got.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in got else b""
    return status, body


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.slow_connected = 0
        self.slow_closed = 0
        self.slow_408 = 0
        self.slow_connect_errors = 0
        self.watch_connected = 0
        self.watch_ended = 0
        self.watch_errors = 0

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)


def slow_client(port, stop, st):
    while not stop.is_set():
        try:
            s = socket.create_connection((HOST, port), timeout=5.0)
        except OSError:
            st.add(slow_connect_errors=1)
            stop.wait(1.0)
            continue
        st.add(slow_connected=1)
        got = b""
        try:
            s.sendall(f"GET /api/health HTTP/1.1\r\nHost: {HOST}:{port}\r\nX-Slow: ".encode())
            s.settimeout(1.0)
            while not stop.is_set():
                try:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                    continue
                except socket.timeout:
                    pass
                s.send(b"a")
        except OSError:
            pass
        finally:
            s.close()
            st.add(slow_connected=-1)
        if not stop.is_set():
            st.add(slow_closed=1, slow_408=1 if got.startswith(b"HTTP/1.1 408") or got.startswith(b"HTTP/1.0 408") else 0)


def watcher(port, run_id, stop, st):
    while not stop.is_set():
        try:
            s = socket.create_connection((HOST, port), timeout=5.0)
        except OSError:
            st.add(watch_errors=1)
            stop.wait(1.0)
            continue
        st.add(watch_connected=1)
        try:
            s.sendall(f"GET /api/runs/{run_id}/events HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
            s.settimeout(0.5)
            while not stop.is_set():
                try:
                    if not s.recv(256):  # a little at a time, slowly
                        st.add(watch_ended=1)
                        break
                except socket.timeout:
                    pass
                stop.wait(0.3)
        except OSError:
            st.add(watch_errors=1)
        finally:
            s.close()
            st.add(watch_connected=-1)
        stop.wait(0.2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--slow", type=int, default=24)
    ap.add_argument("--watchers", type=int, default=24)
    a = ap.parse_args()
    a.seconds = min(a.seconds, 600.0)  # bounded whatever is asked

    status, body = request(a.port, "POST", "/api/runs",
                           {"task": "copy", "steps": 20000, "batch": 4, "seq_len": 8,
                            "config": {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 1}})
    run_id = json.loads(body).get("run_id") if status == 202 else None
    if run_id is None:
        print(f"hostile: POST /api/runs answered {status}: {body[:200]!r}; no watchers", flush=True)
        a.watchers = 0

    stop = threading.Event()
    st = Stats()
    threads = [threading.Thread(target=slow_client, args=(a.port, stop, st), daemon=True) for _ in range(a.slow)]
    threads += [threading.Thread(target=watcher, args=(a.port, run_id, stop, st), daemon=True)
                for _ in range(a.watchers)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5 and (st.slow_connected < a.slow or st.watch_connected < a.watchers):
        time.sleep(0.05)
    print(f"hostile: ready ({st.slow_connected} slow clients, {st.watch_connected} watchers of run {run_id})", flush=True)
    stop.wait(max(0.0, a.seconds - (time.monotonic() - t0)))
    slow_now, watch_now = st.slow_connected, st.watch_connected
    stop.set()
    for t in threads:
        t.join(3.0)
    if run_id is not None:
        try:
            request(a.port, "DELETE", f"/api/runs/{run_id}")
        except OSError:
            pass
    print(f"hostile: slow clients: {slow_now} of {a.slow} still connected at the end; {st.slow_closed} closed by the "
          f"server ({st.slow_408} with a 408); {st.slow_connect_errors} connect errors", flush=True)
    print(f"hostile: watchers: {watch_now} of {a.watchers} still connected at the end; {st.watch_ended} streams ended, "
          f"{st.watch_errors} errors", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
