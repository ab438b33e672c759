#!/usr/bin/python3
"""The assistant's optional chat model (`serve --assistant-model URL --assistant-model-name NAME`) against a
scripted OpenAI-compatible server in this process (Python 3 standard library): the reply streams through, the
citations and numbers stay BlockLab's, the model is sent the lessons' passages and the engine's numbers, an
unanswerable question never reaches it, and an error, a timeout, a stall or a malformed stream falls back to
the offline answer.

    /usr/bin/python3 tests/server/assistant_model_test.py --blocklab build/blocklab --source-dir .

Every check prints `PASS name` or `FAIL name: why`; exit status 1 if any failed.
"""

import argparse
import http.client
import http.server
import json
import os
import subprocess
import tempfile
import threading
import time

from blocklab_procs import HOST, Checks, Client, Proc

PIECES = ["The mean ", "is 0.4 and ", "the spread 1.4445."]


class Scripted(http.server.BaseHTTPRequestHandler):
    """POST /v1/chat/completions, streamed as OpenAI's API does; `mode` says how to misbehave."""

    mode = "ok"
    requests = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        try:
            self.reply()
        except (BrokenPipeError, ConnectionResetError):
            pass  # blocklab gave up on a slow model: as it should

    def reply(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Scripted.requests.append({"path": self.path, "body": body})
        mode = Scripted.mode
        if mode == "error":
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "model crashed"}')
            return
        if mode == "slow":
            time.sleep(4)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if mode == "garbage":
            self.wfile.write(b"data: this is not json\n\n")
            return
        for i, p in enumerate(PIECES):
            chunk = {"choices": [{"index": 0, "delta": {"content": p}}]}
            self.wfile.write(("data: " + json.dumps(chunk) + "\n\n").encode())
            self.wfile.flush()
            if mode == "stall" and i == 0:
                time.sleep(5)
                return
            time.sleep(0.05)
        self.wfile.write(b"data: [DONE]\n\n")


def ask(port, question, page=None, stream=False, timeout=30):
    body = {"question": question}
    if page:
        body["page"] = page
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    headers = {"Host": f"{HOST}:{port}", "Content-Type": "application/json"}
    if stream:
        headers["Accept"] = "text/event-stream"
    t0 = time.monotonic()
    c.request("POST", "/api/assistant", body=json.dumps(body), headers=headers)
    r = c.getresponse()
    raw = r.read().decode()
    c.close()
    took = time.monotonic() - t0
    if not stream:
        return r.status, json.loads(raw), took
    events = []
    for block in raw.split("\n\n"):
        ev = data = None
        for line in block.split("\n"):
            if line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if ev:
            events.append((ev, data))
    return r.status, events, took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocklab", required=True)
    ap.add_argument("--source-dir", required=True)
    opts = ap.parse_args()
    check = Checks()
    model = http.server.ThreadingHTTPServer((HOST, 0), Scripted)
    threading.Thread(target=model.serve_forever, daemon=True).start()
    folder = tempfile.mkdtemp(prefix="blocklab_assistant_model_")
    offline = json.loads(subprocess.run([opts.blocklab, "assistant", "ask", "--json", "LayerNorm of [0.1, 2.3, -1.2]?",
                                         "--page", "layernorm"], capture_output=True, text=True, check=True).stdout)
    server = Proc([opts.blocklab, "serve", "--host", HOST, "--port", "0", "--db", os.path.join(folder, "s.db"),
                   "--models", os.path.join(opts.source_dir, "models"), "--assistant-model",
                   f"http://{HOST}:{model.server_address[1]}/v1", "--assistant-model-name", "scripted-7b",
                   "--assistant-model-timeout", "2"], folder, "serve", "blocklab serve: http://")
    port = server.port
    q = "LayerNorm of [0.1, 2.3, -1.2]?"
    try:
        Scripted.mode, Scripted.requests = "ok", []
        st, j, _ = ask(port, q, "layernorm")
        check("the model's reply is the answer", st == 200 and j["answer"] == "".join(PIECES), f"{st} {j}")
        check("its source is the model's name", j.get("source") == "scripted-7b", j.get("source"))
        check("citations and numbers stay BlockLab's", j.get("citations") == offline["citations"] and j.get("computed") == offline["computed"],
              json.dumps(j)[:300])
        sent = Scripted.requests[-1] if Scripted.requests else {"path": "", "body": {}}
        body = sent["body"]
        check("POST {url}/chat/completions", sent["path"] == "/v1/chat/completions", sent["path"])
        check("model and stream fields", body.get("model") == "scripted-7b" and body.get("stream") is True, json.dumps(body)[:200])
        msgs = body.get("messages", [])
        system = msgs[0]["content"] if msgs else ""
        check("the question is the user message", len(msgs) == 2 and msgs[1] == {"role": "user", "content": q}, json.dumps(msgs)[-200:])
        check("the system prompt carries the cited passages", "[layernorm#step-by-step]" in system, system[:200])
        check("and the engine's numbers", "standard deviation = 1.444533" in system and "mean μ = 0.3999999" in system, system[-600:])

        st, ev, _ = ask(port, q, "layernorm", stream=True)
        tokens = [d["text"] for e, d in ev if e == "token"]
        done = [d for e, d in ev if e == "done"]
        check("streamed: the model's pieces as token events", tokens == PIECES, tokens)
        check("then done with the whole answer", len(done) == 1 and done[0]["answer"] == "".join(PIECES) and done[0]["source"] == "scripted-7b",
              done)

        Scripted.requests = []
        st, j, _ = ask(port, "what is the capital of France")
        check("an unanswerable question never reaches the model", st == 200 and j["status"] == "unknown" and not Scripted.requests
              and j["source"] == "lessons", f"{j.get('status')} {len(Scripted.requests)}")

        for mode in ["error", "garbage", "slow"]:
            Scripted.mode = mode
            st, j, took = ask(port, q, "layernorm")
            check(f"{mode}: the offline answer", st == 200 and j["answer"] == offline["answer"] and j["source"] == "lessons", json.dumps(j)[:200])
            check(f"{mode}: the model's failure is said", "model_error" in j, json.dumps(j)[:200])
            check(f"{mode}: within the timeout", took < 3.5, f"{took:.1f} s")
            st, ev, took = ask(port, q, "layernorm", stream=True)
            done = [d for e, d in ev if e == "done"]
            text = "".join(d["text"] for e, d in ev if e == "token")
            check(f"{mode}, streamed: the offline answer streams", len(done) == 1 and done[0]["source"] == "lessons" and text == offline["answer"],
                  json.dumps(ev)[:300])

        Scripted.mode = "stall"
        st, ev, took = ask(port, q, "layernorm", stream=True)
        tokens = [d["text"] for e, d in ev if e == "token"]
        done = [d for e, d in ev if e == "done"]
        check("a stall mid-reply: the first piece was streamed", tokens[:1] == PIECES[:1], tokens)
        check("then done replaces it with the offline answer", len(done) == 1 and done[0]["answer"] == offline["answer"]
              and done[0]["source"] == "lessons" and "model_error" in done[0], json.dumps(done)[:300])
        check("within the timeout", took < 4, f"{took:.1f} s")
        check("the server says why in its log", any("assistant model:" in l for l in server.lines), server.lines[-3:])
    finally:
        server.stop()
        model.shutdown()
    return check.summary()


if __name__ == "__main__":
    raise SystemExit(main())
