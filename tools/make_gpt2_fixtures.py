#!/usr/bin/python3
"""Writes BlockLab's GPT-2 parity fixtures into tests/fixtures/gpt2/ (committed; the tests need no PyTorch), or a
random GPT-2 checkpoint folder of a real size.

  /usr/bin/python3 tools/make_gpt2_fixtures.py                                        # the fixtures
  /usr/bin/python3 tools/make_gpt2_fixtures.py --checkpoint /tmp/gpt2-124m [--size small|medium|large|xl] [--seed 0]

Needs Debian's PyTorch 1.13 (python3-torch), not `transformers`: GPT-2's forward is written out by hand in
tools/gpt2_reference.py. Each fixture is a folder as Hugging Face publishes a GPT-2 checkpoint (config.json with
GPT2Config's keys, model.safetensors), plus expected.safetensors:

  prefixed/  3 layers, n_embd 32, 4 heads, n_positions 16, vocab 61, n_inner null, "gelu_new"; GPT2LMHeadModel's
             tensor names: the "transformer." prefix, the attention-mask buffers h.{i}.attn.bias and
             h.{i}.attn.masked_bias, and lm_head.weight (equal to wte)
  plain/     2 layers, n_embd 32, 4 heads, n_positions 16, vocab 61, n_inner 80, "gelu_pytorch_tanh",
             layer_norm_epsilon 1e-6; GPT2Model's names (no prefix, no buffers, no lm_head)
  half/      plain's weights stored as F16, with an lm_head.weight (F16): the loader's dtype conversion (no
             expected file: the tests compare it with plain's weights)

expected.safetensors holds tokens and targets (I64 [B, T]) and, computed in float64 from the F32 weights:
logits, loss (mean cross-entropy of logits against targets), trace.<name> for every activation under BlockLab's
names, grad.<param> of the loss for every BlockLab parameter (BlockLab's names and layout: a Conv1D weight's
gradient transposed to [out, in]), and grad.<name> for every activation that has one (all but hook_mean,
hook_rstd, hook_normalized).

--checkpoint writes a random GPT-2 of a real size (small: 124M parameters, n_embd 768, 12 heads, 12 layers, 1024
positions, vocab 50257) in float32, with no prefix and the attention-mask buffers, as the published model.safetensors
of openai-community/gpt2 has them: for measuring load time, memory and speed without downloading the weights.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_lite  # noqa: E402
from gpt2_reference import engine_name, forward, param_shapes, random_params  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "gpt2")
INTERNAL = ("hook_mean", "hook_rstd", "hook_normalized")
SIZES = {"small": (768, 12, 12), "medium": (1024, 16, 24), "large": (1280, 20, 36), "xl": (1600, 25, 48)}


def hf_config(n_embd, n_head, n_layer, n_positions, vocab, n_inner=None, act="gelu_new", eps=1e-5):
    """A config.json as transformers' GPT2Config writes it (the keys BlockLab reads, and the others it ignores)."""
    return {"activation_function": act, "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
            "bos_token_id": vocab - 1, "embd_pdrop": 0.1, "eos_token_id": vocab - 1, "initializer_range": 0.02,
            "layer_norm_epsilon": eps, "model_type": "gpt2", "n_ctx": n_positions, "n_embd": n_embd,
            "n_head": n_head, "n_inner": n_inner, "n_layer": n_layer, "n_positions": n_positions,
            "reorder_and_upcast_attn": False, "resid_pdrop": 0.1, "scale_attn_by_inverse_layer_idx": False,
            "scale_attn_weights": True, "summary_activation": None, "summary_first_dropout": 0.1,
            "summary_proj_to_labels": True, "summary_type": "cls_index", "summary_use_proj": True,
            "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
            "torch_dtype": "float32", "transformers_version": "4.35.2", "use_cache": True, "vocab_size": vocab}


def write_folder(folder, config, params, prefix="", buffers=False, lm_head=False, dtype=np.float32):
    """config.json and model.safetensors in Hugging Face's layout (params: GPT2Model names, no prefix)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    P = config["n_positions"]
    tensors = {}
    for name, _ in param_shapes(config):
        if buffers and name.endswith(".ln_1.weight"):  # each block's buffers come with its tensors, as in a state dict
            block = name[: -len("ln_1.weight")]
            tensors[prefix + block + "attn.bias"] = np.tril(np.ones((P, P), np.float32)).reshape(1, 1, P, P)
            tensors[prefix + block + "attn.masked_bias"] = np.array(-1e4, np.float32)
        tensors[prefix + name] = params[name].detach().numpy().astype(dtype)
    if lm_head:
        tensors["lm_head.weight"] = params["wte.weight"].detach().numpy().astype(dtype)
    safetensors_lite.save(os.path.join(folder, "model.safetensors"), tensors, {"format": "pt"})


def expected(config, params, gen, B=2, T=6):
    """Tokens, targets and what GPT-2 computes from them in float64: logits, loss, trace, gradients."""
    V = config["vocab_size"]
    tokens = torch.randint(0, V, (B, T), generator=gen)
    targets = torch.randint(0, V, (B, T), generator=gen)
    p = {k: v.detach().double().requires_grad_(True) for k, v in params.items()}
    trace = {}
    logits = forward(config, p, tokens, trace)
    for name, value in trace.items():
        if not name.endswith(INTERNAL):
            value.retain_grad()
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()
    out = {"tokens": tokens.numpy(), "targets": targets.numpy(), "logits": logits.detach().numpy(),
           "loss": np.array(loss.item())}
    for name, value in trace.items():
        out["trace." + name] = value.detach().numpy()
    for name, value in p.items():
        engine, transpose = engine_name(name)
        g = value.grad.detach()
        out["grad." + engine] = (g.T if transpose else g).contiguous().numpy()
    for name, value in trace.items():
        if not name.endswith(INTERNAL):
            out["grad." + name] = value.grad.detach().numpy()
    return out


def fixtures():
    print(f"PyTorch {torch.__version__}; writing {os.path.relpath(OUT, ROOT)}/")
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    gen = torch.Generator().manual_seed(20261202)
    cases = {
        "prefixed": (hf_config(32, 4, 3, 16, 61), {"prefix": "transformer.", "buffers": True, "lm_head": True}),
        "plain": (hf_config(32, 4, 2, 16, 61, n_inner=80, act="gelu_pytorch_tanh", eps=1e-6), {}),
    }
    for name, (config, layout) in cases.items():
        params = random_params(config, gen)
        folder = os.path.join(OUT, name)
        write_folder(folder, config, params, **layout)
        io = expected(config, params, gen)
        safetensors_lite.save(os.path.join(folder, "expected.safetensors"), io)
        print(f"  {name}: {len(params)} tensors, {sum(k.startswith('trace.') for k in io)} activations, "
              f"loss {io['loss']:.6f}")
        if name == "plain":
            write_folder(os.path.join(OUT, "half"), config, params, lm_head=True, dtype=np.float16)
            print("  half: plain's weights as F16")


def checkpoint(folder, size, seed):
    d, H, L = SIZES[size]
    config = hf_config(d, H, L, 1024, 50257)
    gen = torch.Generator().manual_seed(seed)
    params = random_params(config, gen, dtype=torch.float32)
    write_folder(folder, config, params, buffers=True)
    n = sum(v.numel() for v in params.values())
    print(f"{folder}: a random GPT-2 {size} ({n / 1e6:.1f}M parameters), config.json and model.safetensors "
          f"({os.path.getsize(os.path.join(folder, 'model.safetensors')) / 2**20:.0f} MiB)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", help="write a random GPT-2 checkpoint folder here instead of the fixtures")
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    if args.checkpoint:
        checkpoint(args.checkpoint, args.size, args.seed)
    else:
        fixtures()


if __name__ == "__main__":
    main()
