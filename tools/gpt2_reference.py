"""GPT-2's forward written out by hand in PyTorch (no `transformers`): BlockLab's reference for GPT-2 checkpoints.

Used by tools/make_gpt2_fixtures.py (the committed fixtures and random checkpoint folders) and
bench/torch_compare.py (the gpt2_small_fwd_trace case). Works on a Hugging Face GPT2Model state dict's names
without the "transformer." prefix (wte.weight, wpe.weight, h.{i}.ln_1.*, h.{i}.attn.c_attn.*, ...), in its layout:
Conv1D weights are [in, out] and a Conv1D computes x W + b. The semantics are GPT2LMHeadModel's with dropout off:
token + learned position embedding, pre-LN blocks (x + attn(ln_1(x)), then x + mlp(ln_2(x))), causal attention
scaled by 1/sqrt(d_head), the tanh GELU ("gelu_new"), a final ln_f, and logits = ln_f(x) wte^T (the tied head).
Every activation is recorded under BlockLab's trace names (docs/trace.md), so a caller can compare or
differentiate each one. Masked attention scores are -inf, as BlockLab's hook_scores shows them (Hugging Face
fills them with the dtype's lowest number instead; the pattern is the same, exactly 0 there).
"""
import math

import torch


def config_sizes(config):
    """(d, heads, layers, positions, vocab, d_ff, eps) from a config.json dict."""
    d = config["n_embd"]
    inner = config.get("n_inner")
    return (d, config["n_head"], config["n_layer"], config["n_positions"], config["vocab_size"],
            inner if inner is not None else 4 * d, config.get("layer_norm_epsilon", 1e-5))


def param_shapes(config):
    """Every tensor of a GPT2Model state dict (no prefix, no attention-mask buffers) with its shape, in order."""
    d, _, L, P, V, f, _ = config_sizes(config)
    out = [("wte.weight", (V, d)), ("wpe.weight", (P, d))]
    for i in range(L):
        h = f"h.{i}."
        out += [(h + "ln_1.weight", (d,)), (h + "ln_1.bias", (d,)),
                (h + "attn.c_attn.weight", (d, 3 * d)), (h + "attn.c_attn.bias", (3 * d,)),
                (h + "attn.c_proj.weight", (d, d)), (h + "attn.c_proj.bias", (d,)),
                (h + "ln_2.weight", (d,)), (h + "ln_2.bias", (d,)),
                (h + "mlp.c_fc.weight", (d, f)), (h + "mlp.c_fc.bias", (f,)),
                (h + "mlp.c_proj.weight", (f, d)), (h + "mlp.c_proj.bias", (d,))]
    return out + [("ln_f.weight", (d,)), ("ln_f.bias", (d,))]


def engine_name(name):
    """The BlockLab parameter that holds a GPT-2 tensor, and whether it is transposed there (a Conv1D weight)."""
    fixed = {"wte.weight": "embed.weight", "wpe.weight": "pos_embed.weight", "ln_f.weight": "norm.weight",
             "ln_f.bias": "norm.bias"}
    if name in fixed:
        return fixed[name], False
    _, i, rest = name.split(".", 2)
    table = {"ln_1.weight": "norm1.weight", "ln_1.bias": "norm1.bias", "ln_2.weight": "norm2.weight",
             "ln_2.bias": "norm2.bias", "attn.c_attn.weight": "self_attn.in_proj_weight",
             "attn.c_attn.bias": "self_attn.in_proj_bias", "attn.c_proj.weight": "self_attn.out_proj.weight",
             "attn.c_proj.bias": "self_attn.out_proj.bias", "mlp.c_fc.weight": "linear1.weight",
             "mlp.c_fc.bias": "linear1.bias", "mlp.c_proj.weight": "linear2.weight", "mlp.c_proj.bias": "linear2.bias"}
    return f"layers.{i}.{table[rest]}", rest.endswith(".weight") and not rest.startswith("ln_")


def gelu_new(x):
    """GPT-2's GELU: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def activation(config):
    name = config.get("activation_function", "gelu_new")
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return gelu_new
    if name == "gelu":
        return torch.nn.functional.gelu
    if name == "relu":
        return torch.relu
    raise ValueError(f"activation_function {name!r}")


class Recorder:
    """Records activations by name (trace=None: records nothing)."""

    def __init__(self, trace):
        self.trace = trace

    def __call__(self, name, value):
        if self.trace is not None:
            self.trace[name] = value
        return value


def layer_norm(x, weight, bias, eps, prefix, rec):
    mean = x.mean(-1)
    var = x.var(-1, unbiased=False)
    rstd = 1.0 / torch.sqrt(var + eps)
    rec(prefix + "hook_mean", mean)
    rec(prefix + "hook_rstd", rstd)
    normalized = rec(prefix + "hook_normalized", (x - mean[..., None]) * rstd[..., None])
    return rec(prefix + "hook_out", normalized * weight + bias)


def forward(config, p, tokens, trace=None):
    """Logits [B, T, V] of int tokens [B, T]; `trace` (a dict) gets every activation under its BlockLab name."""
    d, H, L, P, V, f, eps = config_sizes(config)
    D = d // H
    act = activation(config)
    rec = Recorder(trace)
    B, T = tokens.shape
    x = rec("hook_embed", torch.nn.functional.embedding(tokens, p["wte.weight"]))
    positions = torch.arange(T).unsqueeze(0).expand(B, T)
    x = x + rec("hook_pos_embed", torch.nn.functional.embedding(positions, p["wpe.weight"]))
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    for i in range(L):
        h, b = f"h.{i}.", f"blocks.{i}."
        x = rec(b + "hook_resid_pre", x)
        a = layer_norm(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"], eps, b + "ln1.", rec)
        qkv = a @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"]  # Conv1D: x W + b, W [in, out]
        q, k, v = (rec(b + "attn.hook_" + n, t.reshape(B, T, H, D)) for n, t in zip("qkv", qkv.split(d, dim=-1)))
        scores = q.transpose(1, 2) @ k.permute(0, 2, 3, 1) / math.sqrt(D)  # [B, H, T, T]
        scores = rec(b + "attn.hook_scores", scores.masked_fill(causal, float("-inf")))
        pattern = rec(b + "attn.hook_pattern", torch.softmax(scores, dim=-1))
        z = rec(b + "attn.hook_z", (pattern @ v.transpose(1, 2)).transpose(1, 2))  # [B, T, H, D]
        attn_out = rec(b + "hook_attn_out", z.reshape(B, T, d) @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"])
        x = rec(b + "hook_resid_mid", x + attn_out)
        m = layer_norm(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"], eps, b + "ln2.", rec)
        rec(b + "mlp.hook_in", m)
        pre = rec(b + "mlp.hook_pre", m @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"])
        post = rec(b + "mlp.hook_post", act(pre))
        mlp_out = rec(b + "hook_mlp_out", post @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"])
        x = rec(b + "hook_resid_post", x + mlp_out)
    y = layer_norm(x, p["ln_f.weight"], p["ln_f.bias"], eps, "ln_final.", rec)
    return rec("hook_logits", y @ p["wte.weight"].T)


def random_params(config, gen, dtype=torch.float64):
    """Random weights of a GPT-2 of `config` that make every part matter: linear weights ~ N(0, 1/fan_in), biases
    ~ 0.1 N(0, 1), LayerNorm weights 1 + 0.2 N(0, 1), embeddings ~ N(0, 1); values rounded to float32."""
    params = {}
    for name, shape in param_shapes(config):
        r = torch.randn(shape, generator=gen, dtype=dtype)
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
            v = 1.0 + 0.2 * r
        elif len(shape) == 1:
            v = 0.1 * r
        elif name in ("wte.weight", "wpe.weight"):
            v = r
        else:  # Conv1D [in, out]
            v = r / math.sqrt(shape[0])
        params[name] = v.float().to(dtype)
    return params
