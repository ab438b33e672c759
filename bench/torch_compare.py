#!/usr/bin/python3
"""BlockLab vs PyTorch 1.13 (Debian's python3-torch), same cases, same machine, same run.

  /usr/bin/python3 bench/torch_compare.py [--threads 1 2] [--budget-s 1] [--binary build/blocklab] [--markdown]

For each thread count, times the contract's `blocklab bench` cases in PyTorch (the way a PyTorch user writes
them: F.layer_norm, an RMSNorm from ops as 1.13 has none, F.gelu(approximate='tanh'), Linear-GELU-Linear,
nn.TransformerEncoderLayer, the seeds' copy-task step with Adam, and GPT-2 small's forward with every activation
kept, written out as tools/gpt2_reference.py has it), then runs `blocklab bench --json` with the
same thread count, and prints one table: minimum and median ms of each, and the ratio PyTorch / BlockLab
(> 1: BlockLab is faster). Both sides: one untimed warm-up call, then at least 5 timed calls and at least
--budget-s seconds per case. Thread counts are set for PyTorch, OpenMP and OpenBLAS alike.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENS, BATCH, SEQ, D, FF, HEADS = 4096, 32, 128, 512, 2048, 8


def time_calls(fn, budget_s, min_repeats=5):
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < budget_s and len(times) < 1000):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    return times[0], median


def torch_cases():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.manual_seed(0)
    cases = {}

    x = torch.randn(TOKENS, D)
    dy = torch.randn(TOKENS, D)
    w = torch.randn(D) * 0.1 + 1
    b = torch.randn(D) * 0.1

    def layernorm_fwd():
        with torch.no_grad():
            F.layer_norm(x, (D,), w, b, 1e-5)
    cases["layernorm_fwd"] = layernorm_fwd

    xg, wg, bg = x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()

    def layernorm_fwdbwd():
        xg.grad = wg.grad = bg.grad = None
        F.layer_norm(xg, (D,), wg, bg, 1e-5).backward(dy)
    cases["layernorm_fwdbwd"] = layernorm_fwdbwd

    def rmsnorm(t, weight):
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-5) * weight

    def rmsnorm_fwd():
        with torch.no_grad():
            rmsnorm(x, w)
    cases["rmsnorm_fwd"] = rmsnorm_fwd

    def rmsnorm_fwdbwd():
        xg.grad = wg.grad = None
        rmsnorm(xg, wg).backward(dy)
    cases["rmsnorm_fwdbwd"] = rmsnorm_fwdbwd

    h = torch.randn(TOKENS, FF)

    def gelu_tanh_fwd():
        with torch.no_grad():
            F.gelu(h, approximate="tanh")
    cases["gelu_tanh_fwd"] = gelu_tanh_fwd

    ffn = nn.Sequential(nn.Linear(D, FF), nn.GELU(), nn.Linear(FF, D))
    xf = x.clone().requires_grad_()

    def ffn_fwdbwd():
        ffn.zero_grad(set_to_none=True)
        xf.grad = None
        ffn(xf).backward(dy)
    cases["ffn_fwdbwd"] = ffn_fwdbwd

    xb = torch.randn(BATCH, SEQ, D, requires_grad=True)
    dyb = torch.randn(BATCH, SEQ, D)
    for placement in ("pre", "post"):
        layer = nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=placement == "pre")

        def block(layer=layer):
            layer.zero_grad(set_to_none=True)
            xb.grad = None
            layer(xb).backward(dyb)
        cases[f"block_{placement}_fwdbwd"] = block

    # The seeds' copy task: Embedding(10, 512) -> pre-norm block -> LayerNorm -> Linear(512, 10); Adam 1e-3.
    class CopyModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, D)
            self.block = nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, activation="gelu",
                                                    batch_first=True, norm_first=True)
            self.norm = nn.LayerNorm(D)
            self.head = nn.Linear(D, 10)

        def forward(self, tokens):
            return self.head(self.norm(self.block(self.embed(tokens))))
    model = CopyModel()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    src = torch.randint(0, 5, (32, 20))

    def copy_train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(src).reshape(-1, 10), src.reshape(-1))
        loss.backward()
        opt.step()
    cases["copy_train_step"] = copy_train_step

    # The same step under autocast to bfloat16 (PyTorch's own bf16 mode: matmuls in bf16, float32 weights).
    model16 = CopyModel()
    opt16 = torch.optim.Adam(model16.parameters(), lr=1e-3)

    def copy_train_step_bf16():
        opt16.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model16(src)
        loss = F.cross_entropy(logits.float().reshape(-1, 10), src.reshape(-1))
        loss.backward()
        opt16.step()
    cases["copy_train_step_bf16"] = copy_train_step_bf16

    # The limits: memory bandwidth (STREAM triad, a = b + s c) and the best sgemm rate.
    n = 8 << 20
    ta, tb, tc = torch.zeros(n), torch.ones(n), torch.full((n,), 2.0)

    def stream_triad():
        torch.add(tb, tc, alpha=3.0, out=ta)
    cases["stream_triad"] = stream_triad
    ga, gb = torch.randn(4096, 512), torch.randn(2048, 512)
    gc = torch.empty(4096, 2048)

    def sgemm():
        torch.matmul(ga, gb.t(), out=gc)
    cases["sgemm"] = sgemm

    def gemm_bf16():  # inputs converted to bf16 in the call, as BlockLab's case does
        torch.matmul(ga.bfloat16(), gb.t().bfloat16())
    cases["gemm_bf16"] = gemm_bf16

    # The interactive shape (16 tokens, d_model 64, d_ff 256): the FFN widget and a 100-layer gradient flow.
    sx = torch.randn(16, 64)
    small_ffn = nn.Sequential(nn.Linear(64, 256), nn.GELU(approximate="tanh"), nn.Linear(256, 64))

    def ffn_small_fwd():
        with torch.no_grad():
            small_ffn(sx)
    cases["ffn_small_fwd"] = ffn_small_fwd

    nx = torch.randn(16, 64, requires_grad=True)
    ndy = torch.randn(16, 64)
    nw = (torch.randn(64) * 0.1 + 1).requires_grad_()
    nb = (torch.randn(64) * 0.1).requires_grad_()

    def layernorm_small_fwdbwd():
        nx.grad = nw.grad = nb.grad = None
        F.layer_norm(nx, (64,), nw, nb, 1e-5).backward(ndy)
    cases["layernorm_small_fwdbwd"] = layernorm_small_fwdbwd

    def rmsnorm_small_fwdbwd():
        nx.grad = nw.grad = None
        rmsnorm(nx, nw).backward(ndy)
    cases["rmsnorm_small_fwdbwd"] = rmsnorm_small_fwdbwd

    class Deep(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 64)
            self.blocks = nn.TransformerEncoder(
                nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True), 100, enable_nested_tensor=False)
            self.head = nn.Linear(64, 10)

        def forward(self, tokens):
            return self.head(self.blocks(self.embed(tokens)))
    deep = Deep()
    dtok = torch.randint(0, 5, (1, 16))

    def gradflow_100():
        deep.zero_grad(set_to_none=True)
        F.cross_entropy(deep(dtok).reshape(-1, 10), dtok.reshape(-1)).backward()
    cases["gradflow_100"] = gradflow_100

    # GPT-2 small (124M), random weights: one sequence of 64 tokens forward, keeping every activation (the full
    # trace, as BlockLab's `forward --trace`), GPT-2's forward written out as tools/gpt2_reference.py has it.
    # Built on the first (untimed warm-up) call, so that a run without this case does not hold its 500 MB.
    gpt2 = {}

    def gpt2_small_fwd_trace():
        if not gpt2:
            sys.path.insert(0, os.path.join(ROOT, "tools"))
            import gpt2_reference
            gpt2["ref"] = gpt2_reference
            gpt2["config"] = {"n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024, "vocab_size": 50257}
            gpt2["params"] = gpt2_reference.random_params(gpt2["config"], torch.Generator().manual_seed(0),
                                                          dtype=torch.float32)
            gpt2["tokens"] = torch.randint(0, 50257, (1, 64))
        with torch.no_grad():
            trace = {}
            gpt2["ref"].forward(gpt2["config"], gpt2["params"], gpt2["tokens"], trace)
    cases["gpt2_small_fwd_trace"] = gpt2_small_fwd_trace
    return cases


LIMITS = ("stream_triad", "sgemm")


def run_torch(threads, budget_s, only):
    import torch
    torch.set_num_threads(threads)
    out = {}
    for name, fn in torch_cases().items():
        if only and name not in only and name not in LIMITS:
            continue
        out[name] = time_calls(fn, budget_s)
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cases": out}


def env_for(threads):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--budget-s", type=float, default=1.0)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "blocklab"))
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    ap.add_argument("--cases", nargs="+", default=[],
                    help="only these cases (the limits, stream_triad and sgemm, are always measured)")
    ap.add_argument("--torch-only", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_only:
        print(json.dumps(run_torch(args.torch_only, args.budget_s, args.cases)))
        return 0

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} cores")
    for threads in args.threads:
        env = env_for(threads)
        torch_res = json.loads(subprocess.run(
            [sys.executable, __file__, "--torch-only", str(threads), "--budget-s", str(args.budget_s)] +
            (["--cases"] + args.cases if args.cases else []),
            env=env, check=True, capture_output=True, text=True).stdout)
        ours_by_name = {}
        for name in (list(LIMITS) + args.cases) if args.cases else [""]:
            ours = json.loads(subprocess.run(
                [args.binary, "bench", "--json", "--threads", str(threads), "--budget-s", str(args.budget_s),
                 "--filter", name], env=env, check=True, capture_output=True, text=True).stdout)
            ours_by_name.update({c["name"]: c for c in ours["cases"]})
        # The machine's limits in this run: the best of both sides' triad bandwidth and sgemm rate (BlockLab's
        # sgemm on both of its libraries, OpenBLAS and oneDNN, whichever it runs).
        tri, gem = ours_by_name["stream_triad"], ours_by_name["sgemm"]
        lib_rates = {lib: ours_by_name[f"sgemm_{lib}"]["flops"] / ours_by_name[f"sgemm_{lib}"]["ms_min"] / 1e6
                     for lib in ("openblas", "onednn") if f"sgemm_{lib}" in ours_by_name}
        bandwidth = max(tri["bytes"] / tri["ms_min"], tri["bytes"] / torch_res["cases"]["stream_triad"][0]) / 1e6  # GB/s
        flop_rate = max([gem["flops"] / gem["ms_min"] / 1e6, gem["flops"] / torch_res["cases"]["sgemm"][0] / 1e6] +
                        list(lib_rates.values()))  # GFLOP/s
        print(f"\nthreads {threads} (PyTorch {torch_res['torch']} reports {torch_res['threads']}); "
              f"memory bandwidth {bandwidth:.1f} GB/s (STREAM triad; PyTorch's torch.add "
              f"{tri['bytes'] / torch_res['cases']['stream_triad'][0] / 1e6:.1f}, BlockLab's loop "
              f"{tri['bytes'] / tri['ms_min'] / 1e6:.1f}), sgemm {flop_rate:.1f} GFLOP/s (PyTorch "
              f"{gem['flops'] / torch_res['cases']['sgemm'][0] / 1e6:.1f}, BlockLab {gem['flops'] / gem['ms_min'] / 1e6:.1f}"
              + "".join(f"; on {lib} {rate:.1f}" for lib, rate in lib_rates.items()) + ")")
        header = ["case", "PyTorch ms min", "PyTorch ms median", "BlockLab ms min", "BlockLab ms median",
                  "PyTorch/BlockLab (min)", "bound", "BlockLab % of bound", "PyTorch % of bound"]
        rows = []
        for name, (t_min, t_med) in torch_res["cases"].items():
            if name in LIMITS:
                continue  # the limits: printed above
            c = ours_by_name[name]

            def share(ms):
                if c["bytes"] > 0:
                    return f"{100 * c['bytes'] / ms / 1e6 / bandwidth:.0f}%"
                if c["flops"] > 0:
                    return f"{100 * c['flops'] / ms / 1e6 / flop_rate:.0f}%"
                return "-"
            bound = "memory" if c["bytes"] > 0 else ("FLOPs" if c["flops"] > 0 else "-")
            rows.append([name, f"{t_min:.3f}", f"{t_med:.3f}", f"{c['ms_min']:.3f}", f"{c['ms_median']:.3f}",
                         f"{t_min / c['ms_min']:.2f}x", bound, share(c["ms_min"]), share(t_min)])
        if args.markdown:
            print("| " + " | ".join(header) + " |")
            print("|" + "---|" * len(header))
            for r in rows:
                print("| " + " | ".join(r) + " |")
        else:
            print("  ".join(f"{h:>14s}" if i else f"{h:18s}" for i, h in enumerate(header)))
            for r in rows:
                print("  ".join(f"{v:>14s}" if i else f"{v:18s}" for i, v in enumerate(r)))
        print(f"BlockLab's float32 GEMMs: {ours.get('gemm', '?')}; its BLAS: {ours['blas']}; bf16 matmuls: {ours['bf16']}")
        if "copy_train_step" in torch_res["cases"] and "copy_train_step_bf16" in ours_by_name:
            f32_torch, bf16_ours = torch_res["cases"]["copy_train_step"][0], ours_by_name["copy_train_step_bf16"]["ms_min"]
            print(f"copy step, BlockLab bf16 vs PyTorch float32 (min): {f32_torch:.3f} / {bf16_ours:.3f} ms = "
                  f"{f32_torch / bf16_ours:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
