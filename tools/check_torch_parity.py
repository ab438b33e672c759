#!/usr/bin/python3
"""BlockLab's CLI against PyTorch 1.13 on fresh random shapes (none of the committed fixtures' shapes).

  /usr/bin/python3 tools/check_torch_parity.py [--seed N] [--binary build/blocklab]

1. nn.TransformerEncoder(nn.TransformerEncoderLayer(batch_first=True), L, norm=LayerNorm) as a PyTorch user
   builds it (PyTorch's own initialisation, then its state_dict() saved to safetensors), norm_first both ways,
   relu and gelu, causal mask on and off: `blocklab forward` / `backward` (float32) vs the module.
2. Every configuration of the contract (norm x placement x activation x residual x causal x final norm)
   against tools/torch_reference.py, also through the CLI.

Truth is PyTorch in float64 on the same float32 weights and inputs. Pass: max |y - y_torch| <= 1e-4 and, per
gradient tensor, max |g - g_torch| <= 1e-3 * max |g_torch|. Prints the worst figures; exits 1 on a failure.
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_lite  # noqa: E402
from torch_reference import DEFAULTS, f32, random_params, run_reference  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FWD_TOL, GRAD_TOL = 1e-4, 1e-3


def run_cli(binary, tmp, cfg, params, x, dy):
    model, inp = os.path.join(tmp, "m.safetensors"), os.path.join(tmp, "in.safetensors")
    safetensors_lite.save(model, {k: v.detach().float().numpy() for k, v in params.items()},
                          {"blocklab.config": json.dumps(cfg)})
    safetensors_lite.save(inp, {"x": x.float().numpy(), "dy": dy.float().numpy()})
    y_path, g_path = os.path.join(tmp, "y.safetensors"), os.path.join(tmp, "g.safetensors")
    for cmd, out in (("forward", y_path), ("backward", g_path)):
        subprocess.run([binary, cmd, "--model", model, "--input", inp, "--output", out], check=True)
    return safetensors_lite.load(y_path)[0], safetensors_lite.load(g_path)[0]


def errors(y_cli, g_cli, y_ref, grads_ref, names):
    fwd = float(np.abs(y_cli["y"] - y_ref.detach().numpy()).max())
    worst_grad, worst_name = 0.0, ""
    for n in names:
        ref = grads_ref[n].numpy()
        got = g_cli["grad." + n]
        scale = max(float(np.abs(ref).max()), 1e-30)
        e = float(np.abs(got - ref).max()) / scale
        if e > worst_grad:
            worst_grad, worst_name = e, n
    return fwd, worst_grad, worst_name


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "little"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "blocklab"))
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(args.seed)
    rnd = np.random.default_rng(args.seed)
    print(f"PyTorch {torch.__version__}, seed {args.seed}")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        # 1. nn.TransformerEncoder as PyTorch initialises it.
        worst = [0.0, 0.0]
        for placement, act, causal in itertools.product(["pre", "post"], ["relu", "gelu"], [False, True]):
            H = int(rnd.choice([2, 3, 4, 6]))
            d = H * int(rnd.integers(5, 17))
            f, L = int(rnd.integers(d, 4 * d + 1)), int(rnd.integers(1, 5))
            B, T = int(rnd.integers(1, 4)), int(rnd.integers(2, 12))
            torch.manual_seed(int(rnd.integers(1 << 30)))
            enc = nn.TransformerEncoder(
                nn.TransformerEncoderLayer(d, H, f, dropout=0.0, activation=act, batch_first=True,
                                           norm_first=placement == "pre"),
                L, norm=nn.LayerNorm(d), enable_nested_tensor=False)
            params = {k: f32(v.detach().double()).requires_grad_(True) for k, v in enc.state_dict().items()}
            enc = enc.double()
            enc.load_state_dict({k: v.detach() for k, v in params.items()})
            x = f32(torch.randn(B, T, d, generator=gen)).requires_grad_(True)
            dy = f32(torch.randn(B, T, d, generator=gen))
            mask = torch.triu(torch.full((T, T), float("-inf")), diagonal=1) if causal else None
            y = enc(x, mask=mask)
            (y * dy).sum().backward()
            grads = {"x": x.grad}
            grads.update({k: p.grad for k, p in enc.named_parameters()})
            cfg = dict(DEFAULTS, d_model=d, n_heads=H, d_ff=f, n_layers=L, placement=placement, activation=act,
                       causal=causal, final_norm=True)
            y_cli, g_cli = run_cli(args.binary, tmp, cfg, params, x.detach(), dy)
            fwd, grad, name = errors(y_cli, g_cli, y, grads, ["x"] + list(params))
            ok = fwd <= FWD_TOL and grad <= GRAD_TOL
            failures += not ok
            worst = [max(worst[0], fwd), max(worst[1], grad)]
            print(f"  nn.TransformerEncoder {placement:4s} {act:4s} causal={str(causal):5s} B={B} T={T:2d} d={d:3d} "
                  f"H={H} d_ff={f:3d} L={L}: |dy| {fwd:.1e}, grad rel {grad:.1e} ({name}) {'ok' if ok else 'FAIL'}")
        print(f"nn.TransformerEncoder: worst forward {worst[0]:.2e}, worst gradient {worst[1]:.2e}")

        # 2. Every configuration of the contract against the reference.
        worst, count, worst_case = [0.0, 0.0], 0, ""
        for norm, placement, act, (residual, alpha), causal, final_norm in itertools.product(
                ["layernorm", "rmsnorm", "none"], ["pre", "post"], ["relu", "gelu", "gelu_tanh"],
                [(True, 1.0), (True, float(rnd.uniform(0.2, 1.8))), (False, 1.0)], [False, True], [False, True]):
            if norm == "none" and final_norm:
                continue
            H = int(rnd.choice([1, 2, 4]))
            d = H * int(rnd.integers(3, 9))
            cfg = dict(DEFAULTS, d_model=d, n_heads=H, d_ff=int(rnd.integers(4, 3 * d)), n_layers=int(rnd.integers(1, 4)),
                       norm=norm, placement=placement, activation=act, residual=residual, residual_alpha=alpha,
                       causal=causal, final_norm=final_norm, eps=float(rnd.choice([1e-5, 1e-6])))
            B, T = int(rnd.integers(1, 4)), int(rnd.integers(1, 9))
            params = random_params(cfg, gen)
            x = f32(torch.randn(B, T, d, generator=gen))
            dy = f32(torch.randn(B, T, d, generator=gen))
            y, _, grads = run_reference(cfg, params, x, dy)
            y_cli, g_cli = run_cli(args.binary, tmp, cfg, params, x, dy)
            fwd, grad, name = errors(y_cli, g_cli, y, grads, ["x"] + list(params))
            if fwd > FWD_TOL or grad > GRAD_TOL:
                failures += 1
                print(f"  FAIL {cfg} B={B} T={T}: |dy| {fwd:.1e}, grad rel {grad:.1e} ({name})")
            if grad > worst[1]:
                worst_case = f"{norm} {placement} {act} residual={residual} alpha={alpha:.2f} causal={causal} final_norm={final_norm} ({name})"
            worst = [max(worst[0], fwd), max(worst[1], grad)]
            count += 1
        print(f"{count} contract configurations: worst forward {worst[0]:.2e}, worst gradient {worst[1]:.2e}"
              f" ({worst_case})")
    print("PASS" if failures == 0 else f"{failures} FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
