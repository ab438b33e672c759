"""The contract's semantics written out in PyTorch (float64): BlockLab's reference for parity checks.

Used by tools/make_fixtures.py (the committed fixtures) and tools/check_torch_parity.py (fresh shapes
through the CLI). PyTorch 1.13 has no RMSNorm and no alpha-residual, so both are written here; the rest is
checked against nn.TransformerEncoder itself in make_fixtures.py.
"""
import math

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

DEFAULTS = {"max_seq_len": None, "d_model": 64, "n_heads": 4, "d_ff": 256, "n_layers": 2, "norm": "layernorm", "placement": "pre",
            "activation": "gelu", "residual": True, "residual_alpha": 1.0, "eps": 1e-5, "final_norm": False,
            "causal": False, "dropout": 0.0, "vocab_size": None}


def f32(t):
    """Rounds to float32 values, kept in float64."""
    return t.float().double()


# ---------------------------------------------------------------------------------------------------
# Parameters, in the contract's names and order
# ---------------------------------------------------------------------------------------------------

def param_shapes(cfg):
    d, f, out = cfg["d_model"], cfg["d_ff"], []
    if cfg["vocab_size"]:
        out.append(("embed.weight", (cfg["vocab_size"], d)))
    if cfg.get("max_seq_len"):
        out.append(("pos_embed.weight", (cfg["max_seq_len"], d)))
    for i in range(cfg["n_layers"]):
        p = f"layers.{i}."
        out += [(p + "self_attn.in_proj_weight", (3 * d, d)), (p + "self_attn.in_proj_bias", (3 * d,)),
                (p + "self_attn.out_proj.weight", (d, d)), (p + "self_attn.out_proj.bias", (d,)),
                (p + "linear1.weight", (f, d)), (p + "linear1.bias", (f,)),
                (p + "linear2.weight", (d, f)), (p + "linear2.bias", (d,))]
        if cfg["norm"] != "none":
            for n in ("norm1", "norm2"):
                out.append((p + n + ".weight", (d,)))
                if cfg["norm"] == "layernorm":
                    out.append((p + n + ".bias", (d,)))
    if cfg["final_norm"]:
        out.append(("norm.weight", (d,)))
        if cfg["norm"] == "layernorm":
            out.append(("norm.bias", (d,)))
    if cfg["vocab_size"]:
        out += [("head.weight", (cfg["vocab_size"], d)), ("head.bias", (cfg["vocab_size"],))]
    return out


def random_params(cfg, gen):
    """Random float32-valued parameters; norms' weights near 1 so gamma and beta both matter."""
    params = {}
    for name, shape in param_shapes(cfg):
        r = torch.randn(shape, generator=gen)
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
            v = 1.0 + 0.2 * r
        elif len(shape) == 1:  # biases
            v = 0.1 * r
        elif name in ("embed.weight", "pos_embed.weight"):
            v = r
        else:  # linear weights [out, in]
            v = r / math.sqrt(shape[1])
        params[name] = f32(v).requires_grad_(True)
    return params


# ---------------------------------------------------------------------------------------------------
# The reference: the contract's semantics, written out, recording every hook
# ---------------------------------------------------------------------------------------------------

class Trace(dict):
    """The activations by hook name; `hook(name, value)`, when given, may return a replacement (a patch) that
    the rest of the forward then uses, as TransformerLens's hook points do."""

    def __init__(self, hook=None):
        super().__init__()
        self.hook = hook


def rec(trace, name, value):
    hook = getattr(trace, "hook", None)
    if hook is not None:
        new = hook(name, value)
        if new is not None:
            value = new
    trace[name] = value
    return value

def norm_ref(cfg, x, weight, bias, prefix, trace):
    eps = cfg["eps"]
    if cfg["norm"] == "layernorm":
        mean = x.mean(-1)
        var = x.var(-1, unbiased=False)
        rstd = 1.0 / torch.sqrt(var + eps)
        normalized = (x - mean[..., None]) * rstd[..., None]
        out = normalized * weight + bias
        rec(trace, prefix + "hook_mean", mean)
    else:  # rmsnorm: x / sqrt(mean(x^2) + eps) * weight
        rstd = 1.0 / torch.sqrt((x * x).mean(-1) + eps)
        normalized = x * rstd[..., None]
        out = normalized * weight
    rec(trace, prefix + "hook_rstd", rstd)
    rec(trace, prefix + "hook_normalized", normalized)
    return rec(trace, prefix + "hook_out", out)


def activation_ref(name, x):
    if name == "relu":
        return F.relu(x)
    if name == "gelu":
        return F.gelu(x)
    return F.gelu(x, approximate="tanh")


def attention_ref(cfg, p, prefix, x, trace):
    B, T, d = x.shape
    H = cfg["n_heads"]
    D = d // H
    qkv = x @ p[prefix + "self_attn.in_proj_weight"].T + p[prefix + "self_attn.in_proj_bias"]
    q, k, v = qkv.split(d, dim=-1)
    q, k, v = (t.reshape(B, T, H, D) for t in (q, k, v))
    h = prefix_hook(prefix)
    q = rec(trace, h + "attn.hook_q", q)
    k = rec(trace, h + "attn.hook_k", k)
    v = rec(trace, h + "attn.hook_v", v)
    scores = q.transpose(1, 2) @ k.permute(0, 2, 3, 1) / math.sqrt(D)  # [B, H, T, T]
    if cfg["causal"]:
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    scores = rec(trace, h + "attn.hook_scores", scores)
    pattern = rec(trace, h + "attn.hook_pattern", scores.softmax(-1))
    z = rec(trace, h + "attn.hook_z", (pattern @ v.transpose(1, 2)).transpose(1, 2))  # [B, T, H, D]
    w_o, b_o = p[prefix + "self_attn.out_proj.weight"], p[prefix + "self_attn.out_proj.bias"]
    if getattr(trace, "hook", None) is not None:  # hook points only: each head's share of out_proj, [B, T, H, d]
        result = rec(trace, h + "attn.hook_result", torch.einsum("bthk,ehk->bthe", z, w_o.reshape(d, H, D)))
        return result.sum(2) + b_o
    return z.reshape(B, T, d) @ w_o.T + b_o


def ffn_ref(cfg, p, prefix, x, trace):
    h = prefix_hook(prefix)
    x = rec(trace, h + "mlp.hook_in", x)
    pre = rec(trace, h + "mlp.hook_pre", x @ p[prefix + "linear1.weight"].T + p[prefix + "linear1.bias"])
    post = rec(trace, h + "mlp.hook_post", activation_ref(cfg["activation"], pre))
    return post @ p[prefix + "linear2.weight"].T + p[prefix + "linear2.bias"]


def prefix_hook(param_prefix):  # "layers.3." -> "blocks.3."
    return "blocks." + param_prefix.split(".")[1] + "."


def residual_ref(cfg, x, f):
    return x + cfg["residual_alpha"] * f if cfg["residual"] else f


def block_ref(cfg, p, i, x, trace):
    pp, h = f"layers.{i}.", f"blocks.{i}."
    has_norm = cfg["norm"] != "none"
    n = lambda t, which: norm_ref(cfg, t, p[pp + which + ".weight"], p.get(pp + which + ".bias"), h + which.replace("norm", "ln") + ".", trace) if has_norm else t  # noqa: E731
    x = rec(trace, h + "hook_resid_pre", x)
    if cfg["placement"] == "pre":
        f1 = rec(trace, h + "hook_attn_out", attention_ref(cfg, p, pp, n(x, "norm1"), trace))
        mid = rec(trace, h + "hook_resid_mid", residual_ref(cfg, x, f1))
        f2 = rec(trace, h + "hook_mlp_out", ffn_ref(cfg, p, pp, n(mid, "norm2"), trace))
        out = residual_ref(cfg, mid, f2)
    else:
        f1 = rec(trace, h + "hook_attn_out", attention_ref(cfg, p, pp, x, trace))
        s1 = rec(trace, h + "hook_sum1", residual_ref(cfg, x, f1))
        mid = rec(trace, h + "hook_resid_mid", n(s1, "norm1"))
        f2 = rec(trace, h + "hook_mlp_out", ffn_ref(cfg, p, pp, mid, trace))
        s2 = rec(trace, h + "hook_sum2", residual_ref(cfg, mid, f2))
        out = n(s2, "norm2")
    return rec(trace, h + "hook_resid_post", out)


def stack_ref(cfg, p, x, trace):
    for i in range(cfg["n_layers"]):
        x = block_ref(cfg, p, i, x, trace)
    if cfg["final_norm"]:
        x = norm_ref(cfg, x, p["norm.weight"], p.get("norm.bias"), "ln_final.", trace)
    return x


def run_reference(cfg, params, x, dy):
    """y, the trace, and the gradients of sum(y * dy) for x and every parameter."""
    x = x.clone().requires_grad_(True)
    trace = {}
    y = stack_ref(cfg, params, x, trace)
    loss = (y * dy).sum()
    names = ["x"] + list(params)
    gs = torch.autograd.grad(loss, [x] + list(params.values()), allow_unused=True)
    grads = {n: (g if g is not None else torch.zeros_like(t)).detach()
             for n, g, t in zip(names, gs, [x] + list(params.values()))}
    return y, trace, grads
