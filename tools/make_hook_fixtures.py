#!/usr/bin/python3
"""Writes BlockLab's hook fixtures into tests/fixtures/hooks/ (committed; tests need no PyTorch).

Run with Debian's PyTorch 1.13 (package python3-torch):   /usr/bin/python3 tools/make_hook_fixtures.py

What they check (tests/engine/hooks_test.cpp, and the Python module's tests): patching any named activation
during a forward, as a TransformerLens hook that overwrites some of its elements does, and the gradients of
named activations (PyTorch's retain_grad), on the reference of tools/torch_reference.py in float64.

Each case is two files:
  <case>.model.safetensors  the model (F32 values, PyTorch names, config in __metadata__)
  <case>.io.safetensors     x and dy (or tokens and targets), then
    base.y, base.grad.<name>          y and the gradient of every activation (but a norm's mean, rstd and
                                      normalized) of an unpatched forward: loss = sum(y * dy) (or the mean
                                      cross-entropy of a language model: base.loss)
    patch.<name>.mask / .values       a patch of <name>: value = where(mask, values, value) (mask 0/1, F64)
    patched.<name>.y / .loss, .grad.x, .grad.<param>, .wrt.<other>
                                      the patched forward's output, every parameter's gradient, and the
                                      gradients of <name> itself, of the first block's input and of the last
                                      block's output, through the patched forward
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_lite  # noqa: E402
from torch_reference import DEFAULTS, Trace, f32, random_params, rec, stack_ref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "hooks")
torch.set_default_dtype(torch.float64)

INTERNAL = ("hook_mean", "hook_rstd", "hook_normalized")

CASES = {
    # name: (config changes, batch, seq_len)
    "pre_layernorm_causal_final": (dict(causal=True, final_norm=True), 2, 4),
    "post_layernorm_relu_alpha": (dict(placement="post", activation="relu", residual_alpha=0.7), 2, 3),
    "pre_none_tanh": (dict(norm="none", activation="gelu_tanh"), 2, 4),
    "post_rmsnorm_nores_final": (dict(placement="post", norm="rmsnorm", residual=False, final_norm=True), 1, 4),
    "lm_pre_positions": (dict(vocab_size=7, max_seq_len=6, final_norm=True, causal=True), 2, 4),
}


def forward(cfg, params, inputs, hook):
    """One forward with `hook` at every hook point; returns (what is differentiated, the output, the trace)."""
    trace = Trace(hook)
    if cfg["vocab_size"]:
        tokens, targets = inputs
        B, T = tokens.shape
        tok = F.embedding(tokens, params["embed.weight"])
        tok = rec(trace, "hook_embed", tok)
        pos = params["pos_embed.weight"][:T].expand(B, T, -1)
        pos = rec(trace, "hook_pos_embed", pos)
        y = stack_ref(cfg, params, tok + pos, trace)
        logits = rec(trace, "hook_logits", y @ params["head.weight"].T + params["head.bias"])
        loss = F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), targets.reshape(-1))
        return loss, loss, trace
    x, dy = inputs
    y = stack_ref(cfg, params, x, trace)
    return (y * dy).sum(), y, trace


def rec(trace, name, value):
    from torch_reference import rec
    return rec(trace, name, value)


def write_case(name, changes, B, T, gen):
    cfg = dict(DEFAULTS, d_model=8, n_heads=2, d_ff=16, n_layers=2, **changes)
    params = random_params(cfg, gen)
    io = {}
    if cfg["vocab_size"]:
        tokens = torch.randint(0, cfg["vocab_size"], (B, T), generator=gen)
        targets = torch.randint(0, cfg["vocab_size"], (B, T), generator=gen)
        io.update(tokens=tokens.numpy().astype(np.int32), targets=targets.numpy().astype(np.int32))
        make_inputs = lambda: (tokens, targets)  # noqa: E731
        leaf = None
    else:
        x0 = f32(torch.randn(B, T, cfg["d_model"], generator=gen))
        dy = f32(torch.randn(B, T, cfg["d_model"], generator=gen))
        io.update(x=x0.float().numpy(), dy=dy.float().numpy())
        leaf = x0

        def make_inputs():
            return (x0.clone().requires_grad_(True), dy)

    # The unpatched forward: every activation's gradient.
    kept = {}

    def keep_all(n, v):
        # each hook point its own tensor (an identity, as TransformerLens's hook points): mlp.hook_in's gradient
        # is then the FFN's part alone where the FFN reads the residual stream (post placement, no norm)
        if not n.endswith(INTERNAL) and v.requires_grad:
            v = v.clone()
            v.retain_grad()
            kept[n] = v
            return v

    def forward_backward(hook):
        inputs = make_inputs()
        loss, out, trace = forward(cfg, params, inputs, hook)
        for p in params.values():
            p.grad = None
        loss.backward()
        return inputs, out, trace

    inputs, out, trace = forward_backward(keep_all)
    names = list(trace.keys())
    io["base.loss" if cfg["vocab_size"] else "base.y"] = out.detach().numpy()
    for n, v in kept.items():
        io["base.grad." + n] = v.grad.detach().numpy()
    first, last = "blocks.0.hook_resid_pre", f"blocks.{cfg['n_layers'] - 1}.hook_resid_post"

    # One patched forward per patchable name.
    patchable = [n for n in names if not n.endswith(INTERNAL)]
    for target in patchable:
        shape = trace[target].shape
        mask = torch.rand(shape, generator=gen) < 0.5
        values = f32(torch.randn(shape, generator=gen))
        wrt = {target, first, last}
        seen = {}

        def patch(n, v):
            if n == target:
                v = torch.where(mask, values, v)
            elif n in wrt:
                v = v.clone()
            if n in wrt and v.requires_grad:
                v.retain_grad()
                seen[n] = v
            return v

        inputs, out, _ = forward_backward(patch)
        pre = f"patched.{target}."
        io[f"patch.{target}.mask"] = mask.double().numpy()
        io[f"patch.{target}.values"] = values.numpy()
        io[pre + ("loss" if cfg["vocab_size"] else "y")] = out.detach().numpy()
        if leaf is not None:
            io[pre + "grad.x"] = inputs[0].grad.detach().numpy()
        for k, p in params.items():
            io[pre + "grad." + k] = (p.grad if p.grad is not None else torch.zeros_like(p)).detach().numpy()
        for n in sorted(wrt):  # a set: sorted, so that the file is the same bytes on every run
            v = seen.get(n)
            # a patch that replaced every element leaves nothing upstream to differentiate: zeros
            io[pre + "wrt." + n] = (v.grad if v is not None and v.grad is not None else torch.zeros(trace[n].shape)).detach().numpy()
    safetensors_lite.save(os.path.join(OUT, name + ".model.safetensors"),
                          {k: v.detach().float().numpy() for k, v in params.items()}, {"blocklab.config": json.dumps(cfg)})
    safetensors_lite.save(os.path.join(OUT, name + ".io.safetensors"), {k: np.ascontiguousarray(v) for k, v in io.items()})
    return len(patchable)


def main():
    print(f"PyTorch {torch.__version__}; writing {os.path.relpath(OUT, ROOT)}/")
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    gen = torch.Generator().manual_seed(20261202)
    for name, (changes, B, T) in CASES.items():
        n = write_case(name, changes, B, T, gen)
        print(f"  {name}: {n} patched forwards")


if __name__ == "__main__":
    main()
