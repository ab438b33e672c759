#!/usr/bin/python3
"""Writes BlockLab's PyTorch parity fixtures into tests/fixtures/parity/ (committed; tests need no PyTorch).

Run with Debian's PyTorch 1.13 (package python3-torch):   /usr/bin/python3 tools/make_fixtures.py

Each case is two files:
  <case>.model.safetensors  the model as BlockLab reads it: F32 parameters with PyTorch names, config in
                            __metadata__["blocklab.config"]
  <case>.io.safetensors     x and dy (F32) and what PyTorch computes from them in float64: y, every trace
                            activation as trace.<hook name>, grad.x and grad.<parameter> of loss = sum(y * dy)

Parameters and inputs are drawn in float32 and computed in float64, so the engine can be checked exactly
(float64, ~1e-12) and in its normal precision (float32) against the same numbers.

Cases:
  sweep_*        every configuration of the contract: norm x placement x activation x residual (alpha 1,
                 alpha 0.7, off) x causal x final norm, on a reference written here from the contract's
                 semantics (PyTorch 1.13 has no RMSNorm and no alpha-residual).
  torch_encoder_* nn.TransformerEncoder(nn.TransformerEncoderLayer(batch_first=True), norm=LayerNorm) itself:
                 norm_first both ways, relu and gelu, causal mask on and off. The reference is checked
                 against the module here (y, every gradient, and the activations hooks can reach).
  lm_adamw       the language-model wrapper (embedding -> blocks -> final norm -> head -> cross-entropy)
                 and three torch.optim.AdamW steps.
  lm_positions   the language model with a learned position embedding (max_seq_len), post-LN, tanh-GELU.
  optim_*        torch.optim.AdamW and torch.optim.Adam (weight decay 0.1) with a LambdaLR linear warm-up and
                 clip_grad_norm_, five steps on different batches.
"""
import itertools
import json
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_lite  # noqa: E402
from torch_reference import DEFAULTS, f32, random_params, run_reference, stack_ref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "parity")
torch.set_default_dtype(torch.float64)

# ---------------------------------------------------------------------------------------------------
# Writing a case
# ---------------------------------------------------------------------------------------------------

def write_case(name, cfg, params, x, dy, y, trace, grads):
    full = dict(DEFAULTS, **cfg)
    model = {k: v.detach().float().numpy() for k, v in params.items()}
    safetensors_lite.save(os.path.join(OUT, name + ".model.safetensors"), model,
                          {"blocklab.config": json.dumps(full)})
    io = {"x": x.detach().float().numpy(), "dy": dy.detach().float().numpy(), "y": y.detach().numpy()}
    for k, v in trace.items():
        io["trace." + k] = v.detach().numpy()
    io["grad.x"] = grads["x"].numpy()
    for k in params:
        io["grad." + k] = grads[k].numpy()
    safetensors_lite.save(os.path.join(OUT, name + ".io.safetensors"), io)


def sweep_cases(gen):
    small = {"d_model": 4, "n_heads": 2, "d_ff": 8, "n_layers": 2}
    B, T = 2, 3
    count = 0
    for norm, placement, act, (residual, alpha), causal, final_norm in itertools.product(
            ["layernorm", "rmsnorm", "none"], ["pre", "post"], ["relu", "gelu", "gelu_tanh"],
            [(True, 1.0), (True, 0.7), (False, 1.0)], [False, True], [False, True]):
        if norm == "none" and final_norm:
            continue  # a bad config value by the contract
        cfg = dict(DEFAULTS, **small, norm=norm, placement=placement, activation=act, residual=residual,
                   residual_alpha=alpha, causal=causal, final_norm=final_norm)
        params = random_params(cfg, gen)
        x = f32(torch.randn(B, T, cfg["d_model"], generator=gen))
        dy = f32(torch.randn(B, T, cfg["d_model"], generator=gen))
        y, trace, grads = run_reference(cfg, params, x, dy)
        res = "res1" if residual and alpha == 1.0 else ("res07" if residual else "nores")
        name = f"sweep_{norm}_{placement}_{act}_{res}_{'causal' if causal else 'full'}_{'final' if final_norm else 'nofinal'}"
        write_case(name, cfg, params, x, dy, y, trace, grads)
        count += 1
    return count


def torch_encoder_cases(gen):
    d, H, f, L, B, T = 16, 4, 32, 3, 2, 5
    count = 0
    for placement, act, causal in itertools.product(["pre", "post"], ["relu", "gelu"], [False, True]):
        layer = nn.TransformerEncoderLayer(d, H, f, dropout=0.0, activation=act, batch_first=True,
                                           norm_first=(placement == "pre"))
        enc = nn.TransformerEncoder(layer, L, norm=nn.LayerNorm(d), enable_nested_tensor=False).double()
        cfg = dict(DEFAULTS, d_model=d, n_heads=H, d_ff=f, n_layers=L, placement=placement, activation=act,
                   causal=causal, final_norm=True)
        params = random_params(cfg, gen)
        module_params = dict(enc.named_parameters())
        assert list(module_params) == list(params), (list(module_params), list(params))
        with torch.no_grad():
            for k, v in params.items():
                module_params[k].copy_(v)
        x = f32(torch.randn(B, T, d, generator=gen)).requires_grad_(True)
        dy = f32(torch.randn(B, T, d, generator=gen))
        mask = torch.triu(torch.full((T, T), float("-inf")), diagonal=1) if causal else None

        hooked = {}
        handles = []
        for i, lay in enumerate(enc.layers):
            h = f"blocks.{i}."
            ln1, ln2 = (h + "ln1.hook_out", h + "ln2.hook_out")
            handles.append(lay.norm1.register_forward_hook(lambda m, i_, o, k=ln1: hooked.__setitem__(k, o)))
            handles.append(lay.norm2.register_forward_hook(lambda m, i_, o, k=ln2: hooked.__setitem__(k, o)))
            handles.append(lay.self_attn.register_forward_hook(
                lambda m, i_, o, k=h + "hook_attn_out": hooked.__setitem__(k, o[0])))
            handles.append(lay.linear1.register_forward_hook(
                lambda m, i_, o, k=h + "mlp.hook_pre": hooked.__setitem__(k, o)))
            handles.append(lay.linear2.register_forward_pre_hook(
                lambda m, i_, k=h + "mlp.hook_post": hooked.__setitem__(k, i_[0])))
            handles.append(lay.linear2.register_forward_hook(
                lambda m, i_, o, k=h + "hook_mlp_out": hooked.__setitem__(k, o)))
            handles.append(lay.register_forward_hook(
                lambda m, i_, o, k=h + "hook_resid_post": hooked.__setitem__(k, o)))
        handles.append(enc.norm.register_forward_hook(lambda m, i_, o: hooked.__setitem__("ln_final.hook_out", o)))
        y = enc(x, mask=mask)
        for hd in handles:
            hd.remove()
        (y * dy).sum().backward()
        grads = {"x": x.grad.detach()}
        grads.update({k: v.grad.detach() for k, v in module_params.items()})

        ref_y, trace, ref_grads = run_reference(cfg, params, x.detach(), dy)
        worst = max([(ref_y - y).abs().max().item()] + [(ref_grads[k] - g).abs().max().item() for k, g in grads.items()])
        worst_trace = max((trace[k] - v).abs().max().item() for k, v in hooked.items())
        assert worst < 1e-10 and worst_trace < 1e-10, (placement, act, causal, worst, worst_trace)
        for k, v in hooked.items():
            trace[k] = v
        name = f"torch_encoder_{placement}_{act}_{'causal' if causal else 'full'}"
        write_case(name, cfg, params, x.detach(), dy, y, trace, grads)
        print(f"  {name}: reference vs nn.TransformerEncoder, worst |diff| {max(worst, worst_trace):.2e} "
              f"({len(hooked)} hooked activations)")
        count += 1
    return count


def lm_adamw_case(gen):
    """The language model and AdamW: loss, gradients, and parameters after each of three steps."""
    cfg = dict(DEFAULTS, d_model=8, n_heads=2, d_ff=16, n_layers=2, final_norm=True, causal=True, vocab_size=7)
    B, T, V = 2, 5, cfg["vocab_size"]
    params = random_params(cfg, gen)
    tokens = torch.randint(0, V, (B, T), generator=gen)
    targets = torch.randint(0, V, (B, T), generator=gen)
    hyper = {"lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1}
    opt = torch.optim.AdamW(list(params.values()), **hyper)
    io = {"tokens": tokens.numpy(), "targets": targets.numpy()}
    initial = {k: v.detach().float().numpy() for k, v in params.items()}
    for step in range(1, 4):
        opt.zero_grad()
        trace = {}
        x = F.embedding(tokens, params["embed.weight"])
        trace["hook_embed"] = x
        y = stack_ref(cfg, params, x, trace)
        logits = y @ params["head.weight"].T + params["head.bias"]
        trace["hook_logits"] = logits
        loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
        loss.backward()
        io[f"step{step}.loss"] = np.array(loss.item())
        if step == 1:
            io["logits"] = logits.detach().numpy()
            for k, v in trace.items():
                io["trace." + k] = v.detach().numpy()
            for k, v in params.items():
                io["grad." + k] = v.grad.detach().clone().numpy()
        opt.step()
        for k, v in params.items():
            io[f"step{step}.{k}"] = v.detach().clone().numpy()
    safetensors_lite.save(os.path.join(OUT, "lm_adamw.model.safetensors"), initial,
                          {"blocklab.config": json.dumps(cfg)})
    io["adamw"] = np.array([hyper["lr"], hyper["betas"][0], hyper["betas"][1], hyper["eps"], hyper["weight_decay"]])
    safetensors_lite.save(os.path.join(OUT, "lm_adamw.io.safetensors"), io)
    return 1


def lm_positions_case(gen):
    """The language model with a learned position embedding (max_seq_len): logits, trace, loss, gradients."""
    cfg = dict(DEFAULTS, d_model=8, n_heads=2, d_ff=16, n_layers=2, final_norm=True, vocab_size=7, max_seq_len=6,
               placement="post", activation="gelu_tanh")
    B, T, V = 2, 4, cfg["vocab_size"]
    params = random_params(cfg, gen)
    tokens = torch.randint(0, V, (B, T), generator=gen)
    targets = torch.randint(0, V, (B, T), generator=gen)
    trace = {}
    tok = F.embedding(tokens, params["embed.weight"])
    pos = params["pos_embed.weight"][:T].expand(B, T, -1)
    trace["hook_embed"] = tok
    trace["hook_pos_embed"] = pos
    y = stack_ref(cfg, params, tok + pos, trace)
    logits = y @ params["head.weight"].T + params["head.bias"]
    trace["hook_logits"] = logits
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()
    io = {"tokens": tokens.numpy(), "targets": targets.numpy(), "loss": np.array(loss.item()),
          "logits": logits.detach().numpy()}
    for k, v in trace.items():
        io["trace." + k] = v.detach().numpy()
    for k, v in params.items():
        io["grad." + k] = v.grad.detach().clone().numpy()
    safetensors_lite.save(os.path.join(OUT, "lm_positions.model.safetensors"),
                          {k: v.detach().float().numpy() for k, v in params.items()}, {"blocklab.config": json.dumps(cfg)})
    safetensors_lite.save(os.path.join(OUT, "lm_positions.io.safetensors"), io)
    return 1


def optimizer_cases(gen):
    """Adam and AdamW with a linear warm-up (LambdaLR) and gradient clipping (clip_grad_norm_), five steps on
    different batches: per step the loss, the gradient norm before clipping, and every parameter after it."""
    cfg = dict(DEFAULTS, d_model=8, n_heads=2, d_ff=16, n_layers=2, final_norm=True, causal=True, vocab_size=7)
    B, T, V, steps = 2, 5, cfg["vocab_size"], 5
    hyper = {"lr": 1e-2, "betas": (0.9, 0.98), "eps": 1e-6, "weight_decay": 0.1, "warmup": 3, "clip": 0.5}
    for kind in ("adamw", "adam"):
        params = random_params(cfg, gen)
        initial = {k: v.detach().float().numpy() for k, v in params.items()}
        opt_class = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        opt = opt_class(list(params.values()), lr=hyper["lr"], betas=hyper["betas"], eps=hyper["eps"],
                        weight_decay=hyper["weight_decay"])
        # step t (1-based) uses lr * min(1, t / warmup); LambdaLR's epoch counts from 0
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: min(1.0, (e + 1) / hyper["warmup"]))
        io = {"hyper": np.array([hyper["lr"], hyper["betas"][0], hyper["betas"][1], hyper["eps"],
                                 hyper["weight_decay"], hyper["warmup"], hyper["clip"]])}
        for step in range(1, steps + 1):
            tokens = torch.randint(0, V, (B, T), generator=gen)
            targets = torch.randint(0, V, (B, T), generator=gen)
            opt.zero_grad()
            y = stack_ref(cfg, params, F.embedding(tokens, params["embed.weight"]), {})
            logits = y @ params["head.weight"].T + params["head.bias"]
            loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(list(params.values()), hyper["clip"])
            opt.step()
            sched.step()
            io[f"step{step}.tokens"] = tokens.numpy()
            io[f"step{step}.targets"] = targets.numpy()
            io[f"step{step}.loss"] = np.array(loss.item())
            io[f"step{step}.grad_norm"] = np.array(norm.item())
            for k, v in params.items():
                io[f"step{step}.{k}"] = v.detach().clone().numpy()
        safetensors_lite.save(os.path.join(OUT, f"optim_{kind}.model.safetensors"), initial,
                              {"blocklab.config": json.dumps(cfg)})
        safetensors_lite.save(os.path.join(OUT, f"optim_{kind}.io.safetensors"), io)
    return 2


def main():
    print(f"PyTorch {torch.__version__}; writing {os.path.relpath(OUT, ROOT)}/")
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    gen = torch.Generator().manual_seed(20261127)
    n = sweep_cases(gen)
    print(f"  {n} sweep cases")
    n += torch_encoder_cases(gen)
    n += lm_adamw_case(gen)
    n += optimizer_cases(gen)
    n += lm_positions_case(gen)
    print(f"{n} cases written")


if __name__ == "__main__":
    main()
