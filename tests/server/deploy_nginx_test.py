#!/usr/bin/python3
"""docs/deploy.md's example, for real: deploy/nginx.conf (Debian's nginx) in front of two `blocklab serve`
replicas on one PostgreSQL store and a `blocklab worker`, on loopback. Through nginx only: the health check, a
student registering, a comment, a training job submitted and its event stream read to the end (unbuffered);
then one replica is killed and the service goes on through the other.

    BLOCKLAB_TEST_POSTGRES=postgresql:///postgres?host=…  \\
      /usr/bin/python3 tests/server/deploy_nginx_test.py --blocklab build/blocklab --source-dir .
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from blocklab_procs import HOST, Checks, Client, Database, Proc


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocklab", required=True)
    ap.add_argument("--source-dir", required=True)
    opts = ap.parse_args()
    blocklab, source = os.path.abspath(opts.blocklab), os.path.abspath(opts.source_dir)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    check = Checks()
    if not check("Debian's nginx is installed (scripts/setup.sh)", os.path.exists(nginx), nginx):
        return check.summary()
    database = Database("deploy")
    if not check("a database on the tests' PostgreSQL", database.url, database.why):
        return check.summary()
    db = database.url
    folder = tempfile.mkdtemp(prefix="blocklab_deploy_")
    procs, ngx = [], None
    try:
        p1, p2, front = free_port(), free_port(), free_port()
        shared = os.path.join(folder, "checkpoints")
        replicas = []
        for i, port in enumerate((p1, p2)):
            cwd = os.path.join(folder, f"replica-{i}")
            os.makedirs(cwd)
            replica = Proc([blocklab, "serve", "--port", str(port), "--db", db, "--no-jobs", "--checkpoints", shared,
                            "--trusted-proxy", HOST, "--models", os.path.join(source, "models")],
                           cwd, f"replica {i}", "blocklab serve: http://")
            procs.append(replica)
            replicas.append(replica)
        procs.append(Proc([blocklab, "worker", "--db", db, "--checkpoints", shared], folder, "worker", "Ctrl-C stops"))
        # The committed configuration, with this test's ports and folders.
        nginx_dir = os.path.join(folder, "nginx")
        os.makedirs(nginx_dir)
        os.chmod(folder, 0o755)  # nginx's workers run as nobody when it is started as root
        os.chmod(nginx_dir, 0o777)
        with open(os.path.join(source, "deploy", "nginx.conf")) as f:
            conf = f.read()
        conf = (conf.replace("/var/lib/blocklab-nginx", nginx_dir).replace("127.0.0.1:8081", f"127.0.0.1:{p1}")
                .replace("127.0.0.1:8082", f"127.0.0.1:{p2}").replace("127.0.0.1:8080", f"127.0.0.1:{front}"))
        conf_path = os.path.join(nginx_dir, "nginx.conf")
        with open(conf_path, "w") as f:
            f.write(conf)
        test = subprocess.run([nginx, "-t", "-c", conf_path, "-p", nginx_dir], capture_output=True, text=True)
        check("nginx accepts deploy/nginx.conf", test.returncode == 0, test.stderr.strip()[-300:])
        ngx = subprocess.Popen([nginx, "-c", conf_path, "-p", nginx_dir, "-g", "daemon off;"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(100):
            try:
                socket.create_connection((HOST, front), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        c = Client(front)
        st, j, _ = c.request("GET", "/api/health")
        check("health through nginx", st == 200 and j["store"]["backend"] == "postgresql" and len(j["workers"]) == 1,
              f"{st} {str(j)[:200]}")
        st, j, _ = c.request("POST", "/api/auth/register", {"username": "nadia", "password": "correct horse"})
        check("register through nginx", st == 201, f"{st} {j}")
        st, j, _ = c.request("POST", "/api/comments", {"section": "ffn#position-wise", "body": "through the proxy"})
        check("comment through nginx", st == 201, f"{st} {j}")
        st, j, _ = c.request("POST", "/api/runs", {"task": "copy", "steps": 60, "config": {"n_layers": 1}})
        check("a job through nginx", st == 202, f"{st} {j}")
        # Its event stream, through nginx, arrives step by step (not buffered to the end).
        conn = http.client.HTTPConnection(HOST, front, timeout=120)
        conn.request("GET", f"/api/runs/{j['run_id']}/events", headers={"Host": f"{HOST}:{front}"})
        r = conn.getresponse()
        steps, end, first_step_at, t0 = 0, None, None, time.monotonic()
        event = None
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event == "step":
                    steps += 1
                    first_step_at = first_step_at or time.monotonic() - t0
                elif event == "end":
                    end = json.loads(line[6:])
                    break
        conn.close()
        total = time.monotonic() - t0
        check("the job's events stream through nginx to the end", steps == 60 and end and end["status"] == "finished",
              f"steps {steps}, end {end}")
        check("unbuffered: the first step arrived before the end", first_step_at is not None and first_step_at < total,
              f"first {first_step_at}, end {total}")
        # The replicas saw the student's address from X-Forwarded-For (the trusted proxy's), not nginx's peer.
        log = "\n".join(replicas[0].lines + replicas[1].lines)
        check("the replicas log requests that came through nginx", '"path":"/api/auth/register"' in log, log[-300:])
        # One replica down: the service goes on through the other.
        replicas[0].stop(signal.SIGKILL)
        ok = 0
        for _ in range(6):
            st, j, _ = c.request("GET", "/api/auth/me")
            ok += st == 200
        check("with one replica killed, every request is still answered", ok == 6, f"{ok} of 6")
        st, j, _ = c.request("GET", "/api/comments?section=ffn%23position-wise")
        check("the comment is still there", st == 200 and any(x["body"] == "through the proxy" for x in j["comments"]),
              f"{st} {j}")
    except Exception as e:
        check("the test ran to its end", False, repr(e))
    finally:
        if ngx is not None and ngx.poll() is None:
            ngx.terminate()
            ngx.wait(30)
        for p in procs:
            p.stop(signal.SIGTERM)
        shutil.rmtree(folder, ignore_errors=True)
        database.close()
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
