#!/usr/bin/python3
"""The seeds' copy task in BlockLab and in PyTorch 1.13, same machine, same run (issue: experiments, done-when 1).

  /usr/bin/python3 bench/copy_task_torch.py [--steps 100] [--threads 1] [--binary build/blocklab]
                                             [--precision f32 [bf16]]

Model (seed 003): Embedding(10, 512) -> one pre-norm Transformer block (8 heads, d_ff 2048, GELU, dropout 0) ->
LayerNorm -> Linear(512, 10). Batches of 32 x 20 tokens drawn from 0..4, target = input, cross-entropy, Adam
lr 1e-3. Each side trains --steps steps and reports the first step whose training batch is >= 99% right, the
wall time to that step and for all steps, and the held-out accuracy on 8 fresh batches at the end.
PyTorch uses nn.TransformerEncoderLayer(norm_first=True); BlockLab `blocklab train` with the same config, which
also commits every step to its run store and measures per-layer gradient norms every 10 steps (its one
checkpoint is written after the timed steps). With --precision f32 bf16 both sides also train with bf16
matmuls: BlockLab's `--precision bf16`, PyTorch's torch.autocast("cpu", dtype=torch.bfloat16).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torch_run(steps, threads, seed, precision):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(seed)

    class CopyModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 512)
            self.block = nn.TransformerEncoderLayer(512, 8, 2048, dropout=0.0, activation="gelu", batch_first=True,
                                                    norm_first=True)
            self.norm = nn.LayerNorm(512)
            self.head = nn.Linear(512, 10)

        def forward(self, tokens):
            return self.head(self.norm(self.block(self.embed(tokens))))

    model = CopyModel()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first99, t99 = None, None
    start = time.perf_counter()
    for step in range(1, steps + 1):
        src = torch.randint(0, 5, (32, 20))
        with autocast:
            logits = model(src).float()
        loss = F.cross_entropy(logits.reshape(-1, 10), src.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        acc = (logits.argmax(-1) == src).float().mean().item()
        if first99 is None and acc >= 0.99:
            first99, t99 = step, time.perf_counter() - start
    wall = time.perf_counter() - start
    with torch.no_grad(), autocast:
        accs = []
        for _ in range(8):
            src = torch.randint(0, 5, (32, 20))
            accs.append((model(src).argmax(-1) == src).float().mean().item())
    return {"first_step_99": first99, "wall_s_to_99": t99, "wall_s": wall, "steps": steps,
            "final_accuracy": sum(accs) / len(accs), "ms_per_step": 1e3 * wall / steps}


def blocklab_run(binary, steps, threads, seed, precision):
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [binary, "train", "--task", "copy", "--d-model", "512", "--n-heads", "8", "--d-ff", "2048",
             "--n-layers", "1", "--final-norm", "on", "--activation", "gelu", "--placement", "pre",
             "--optimizer", "adam", "--lr", "1e-3", "--batch", "32", "--seq-len", "20", "--steps", str(steps),
             "--seed", str(seed), "--precision", precision, "--threads", str(threads), "--db", os.path.join(tmp, "runs.db"), "--quiet",
             "--checkpoint-every", str(steps),  # one checkpoint, after the timed steps (PyTorch writes none)
             "--json"], check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    first99 = next((h["step"] for h in r["history"] if h["accuracy"] >= 0.99), None)
    # Wall time to that step: per-step wall times are in the store; the JSON has the total, so scale.
    return {"first_step_99": first99, "wall_s": r["wall_s"], "steps": r["steps"],
            "wall_s_to_99": r["wall_s"] * first99 / r["steps"] if first99 else None,
            "final_accuracy": r["final"]["accuracy"], "ms_per_step": 1e3 * r["wall_s"] / r["steps"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "blocklab"))
    ap.add_argument("--precision", nargs="+", choices=["f32", "bf16"], default=["f32"])
    args = ap.parse_args()
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(args.threads)
    import torch
    results = []
    for precision in args.precision:
        results.append((f"BlockLab {precision}", blocklab_run(args.binary, args.steps, args.threads, args.seed, precision)))
        results.append((f"PyTorch {torch.__version__} {precision}", torch_run(args.steps, args.threads, args.seed, precision)))
    print(f"copy task, {args.steps} steps, {args.threads} thread(s)")
    print(f"| | first step >= 99% (training batch) | wall s to it | wall s, {args.steps} steps | ms / step | "
          f"held-out accuracy |")
    print("|---|---|---|---|---|---|")
    for name, r in results:
        t99 = f"{r['wall_s_to_99']:.2f}" if r["wall_s_to_99"] is not None else "-"
        print(f"| {name} | {r['first_step_99']} | {t99} | {r['wall_s']:.2f} | {r['ms_per_step']:.1f} | "
              f"{100 * r['final_accuracy']:.2f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
