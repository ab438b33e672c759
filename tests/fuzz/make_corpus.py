#!/usr/bin/env python3
"""Writes the fuzz harnesses' seed corpora, tests/fuzz/corpus/<name>/ (committed; rerun to regenerate).

    python3 tests/fuzz/make_corpus.py build/blocklab

The model files are made by the CLI itself (blocklab init / train, tiny shapes: a few KB each); the
variants (other dtypes, broken offsets, truncations, bad metadata) are edits of those in Python.
Standard library only.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(name, rel, data):
    d = os.path.join(CORPUS, name)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, rel), "wb") as f:
        f.write(data)


def split(b):
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def join(header, data, compact=True):
    h = json.dumps(header, separators=(",", ":") if compact else None).encode()
    return struct.pack("<Q", len(h)) + h + data


def safetensors_corpus(blocklab):
    tmp = tempfile.mkdtemp()
    try:
        def run(*args):
            subprocess.run([blocklab, *args], check=True, cwd=tmp, stdout=subprocess.DEVNULL)

        tiny = ["--d-model", "8", "--n-heads", "2", "--d-ff", "16", "--n-layers", "1"]
        models = {
            "model_ln_pre.safetensors": tiny,
            "model_rms_post_final.safetensors": tiny + ["--norm", "rmsnorm", "--placement", "post", "--final-norm", "on"],
            "model_none_relu_off.safetensors": tiny + ["--norm", "none", "--activation", "relu", "--residual", "off"],
            "model_alpha_learnable.safetensors": tiny + ["--alpha", "0.5", "--alpha-learnable", "on", "--causal", "on"],
            "model_lm_positions.safetensors": ["--d-model", "4", "--n-heads", "1", "--d-ff", "8", "--n-layers", "1",
                                               "--vocab-size", "6", "--max-seq-len", "5"],
        }
        files = {}
        for out, flags in models.items():
            run("init", *flags, "--seed", "1", "--output", out)
            files[out] = open(os.path.join(tmp, out), "rb").read()
        run("train", "--task", "copy", "--d-model", "4", "--n-heads", "1", "--d-ff", "8", "--n-layers", "1",
            "--steps", "2", "--batch", "2", "--seq-len", "4", "--db", "t.db", "--save", "ck.safetensors", "--quiet")
        files["checkpoint_copy.safetensors"] = open(os.path.join(tmp, "ck.safetensors"), "rb").read()
    finally:
        shutil.rmtree(tmp)
    for k, v in files.items():
        write("safetensors", k, v)

    base = files["model_ln_pre.safetensors"]
    header, data = split(base)
    meta = header["__metadata__"]
    # The same model as F16 / BF16 / F64 (the loader converts any float dtype).
    for dtype, size in (("F64", 8), ("F16", 2), ("BF16", 2)):
        h, out, pos = {"__metadata__": meta}, b"", 0
        for name, t in header.items():
            if name == "__metadata__":
                continue
            b0, b1 = t["data_offsets"]
            floats = struct.unpack("<%df" % ((b1 - b0) // 4), data[b0:b1])
            if dtype == "F64":
                raw = struct.pack("<%dd" % len(floats), *floats)
            elif dtype == "BF16":
                raw = b"".join(struct.pack("<f", x)[2:] for x in floats)
            else:
                raw = struct.pack("<%de" % len(floats), *floats)
            h[name] = {"dtype": dtype, "shape": t["shape"], "data_offsets": [pos, pos + len(raw)]}
            out += raw
            pos += len(raw)
        write("safetensors", "model_%s.safetensors" % dtype.lower(), join(h, out))
    # Input files as the CLI reads them: x (F32), tokens (I64 / I32 / U8), a BOOL mask.
    x = struct.pack("<8f", *[0.5 * i - 1 for i in range(8)])
    write("safetensors", "input_x.safetensors",
          join({"x": {"dtype": "F32", "shape": [1, 8], "data_offsets": [0, 32]}}, x))
    toks = struct.pack("<4q", 0, 1, 2, 5) + struct.pack("<4i", 3, 2, 1, 0) + bytes([1, 2, 3, 4]) + bytes([1, 0, 1, 1])
    write("safetensors", "input_ints.safetensors", join({
        "tokens": {"dtype": "I64", "shape": [1, 4], "data_offsets": [0, 32]},
        "t32": {"dtype": "I32", "shape": [4], "data_offsets": [32, 48]},
        "t8": {"dtype": "U8", "shape": [2, 2], "data_offsets": [48, 52]},
        "mask": {"dtype": "BOOL", "shape": [4], "data_offsets": [52, 56]},
        "__metadata__": {"note": "ids"}}, toks))
    write("safetensors", "empty_header.safetensors", join({}, b""))
    write("safetensors", "scalar_and_empty.safetensors", join({
        "s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},
        "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [4, 4]}}, struct.pack("<f", 2.5)))
    # Malformed: each one error the reader must name.
    write("safetensors", "bad_truncated.safetensors", base[:len(base) // 2])
    write("safetensors", "bad_header_past_end.safetensors", struct.pack("<Q", 1 << 40) + base[8:200])
    write("safetensors", "bad_header_not_json.safetensors", struct.pack("<Q", 12) + b"{not json}!!")
    write("safetensors", "bad_short.safetensors", b"\x05\x00\x00")
    bad = dict(header)
    first = next(k for k in header if k != "__metadata__")
    bad[first] = dict(header[first], data_offsets=[0, len(data) + 64])
    write("safetensors", "bad_offsets_outside.safetensors", join(bad, data))
    bad = dict(header)
    bad[first] = dict(header[first], shape=[3, 5])
    write("safetensors", "bad_shape_mismatch.safetensors", join(bad, data))
    bad = dict(header)
    bad[first] = dict(header[first], dtype="F8")
    write("safetensors", "bad_dtype.safetensors", join(bad, data))
    bad = dict(header, __metadata__={"blocklab.config": 3})
    write("safetensors", "bad_metadata_not_string.safetensors", join(bad, data))
    cfg = json.loads(meta["blocklab.config"])
    cfg["n_heads"] = 3
    bad = dict(header, __metadata__={"blocklab.config": json.dumps(cfg)})
    write("safetensors", "bad_config_heads.safetensors", join(bad, data))
    bad = dict(header, __metadata__={"blocklab.config": "{\"d_model\": 8, \"colour\": 1}"})
    write("safetensors", "bad_config_unknown_key.safetensors", join(bad, data))
    bad = {k: v for k, v in header.items() if k != first}
    write("safetensors", "bad_missing_tensor.safetensors", join(bad, data))
    # A checkpoint whose training state is not what the loader wants ("step" not an integer).
    ck_h, ck_d = split(files["checkpoint_copy.safetensors"])
    train = json.loads(ck_h["__metadata__"]["blocklab.train"])
    train["step"] = "two"
    ck_bad = dict(ck_h, __metadata__=dict(ck_h["__metadata__"], **{"blocklab.train": json.dumps(train)}))
    write("safetensors", "bad_checkpoint_step.safetensors", join(ck_bad, ck_d))


def config_corpus():
    full = {"activation": "gelu_tanh", "alpha_learnable": False, "causal": True, "d_ff": 128, "d_model": 64,
            "dropout": 0.0, "eps": 1e-05, "final_norm": True, "max_seq_len": 64, "n_heads": 4, "n_layers": 2,
            "norm": "layernorm", "placement": "pre", "residual": True, "residual_alpha": 1.0, "vocab_size": 52}
    good = {
        "empty": {},
        "full_lm": full,
        "stack_rms_post": {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 3, "norm": "rmsnorm",
                           "placement": "post", "activation": "relu", "final_norm": True},
        "no_norm_no_residual": {"norm": "none", "residual": False, "residual_alpha": 0.0, "dropout": 0.5},
        "alpha_learnable": {"residual_alpha": 0.7, "alpha_learnable": True, "eps": 1e-6, "causal": True},
        "nulls": {"vocab_size": None, "max_seq_len": None},
    }
    for k, v in good.items():
        write("config", k + ".json", json.dumps(v, indent=1))
    bad = {
        "unknown_key": '{"d_model": 8, "colour": "blue"}',
        "heads_not_divisor": '{"d_model": 10, "n_heads": 3}',
        "wrong_types": '{"d_model": "64", "residual": 1, "eps": true, "norm": 3}',
        "bad_choice": '{"norm": "batchnorm", "placement": "middle", "activation": "swish"}',
        "negative": '{"d_model": -8, "n_layers": 0, "d_ff": -1}',
        "huge_numbers": '{"d_model": 18446744073709551615, "eps": 1e308, "residual_alpha": -1e308}',
        "float_for_int": '{"d_model": 64.5, "n_heads": 4.0}',
        "positions_without_vocab": '{"max_seq_len": 16}',
        "final_norm_without_norm": '{"norm": "none", "final_norm": true}',
        "alpha_learnable_off": '{"residual": false, "alpha_learnable": true}',
        "dropout_one": '{"dropout": 1.0}',
        "duplicate_keys": '{"d_model": 8, "d_model": 16, "n_heads": 2}',
        "not_object": '[{"d_model": 8}]',
        "truncated": '{"d_model": 8, "n_heads": ',
        "escapes": '{"n\\u0061me": "\\ud83d\\ude00", "norm": "layer\\u006eorm"}',
        "nested": '{"d_model": {"value": 8}, "vocab_size": [1, 2]}',
        "not_json": 'd_model = 8\n',
    }
    for k, v in bad.items():
        write("config", "bad_" + k + ".json", v)


def api_corpus():
    # The first byte picks the endpoint (tests/fuzz/fuzz_api_json.cpp).
    E = {"residual": "0", "layernorm": "1", "rmsnorm": "2", "batchnorm": "3", "ffn": "4", "block": "5",
         "gradflow": "6", "runs": "7"}
    x3 = [[0.1, 2.3, -1.2], [5.0, 5.1, 4.9]]
    x8 = [[1, 0, 0, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0, 1, 0]]
    x64 = [[round(0.01 * i - 0.3, 2) for i in range(64)]]
    reqs = {
        "residual_given": ("residual", {"x": [[1, 2]], "f": [[10, -10]], "alpha": 0.5}),
        "residual_off": ("residual", {"x": [[1, 2]], "f": [[10, -10]], "residual": False}),
        "residual_sublayer": ("residual", {"x": x8, "sublayer": {"model": "stack-tiny", "layer": 0, "kind": "attention"}}),
        "residual_sublayer_ffn": ("residual", {"x": x8, "sublayer": {"model": "stack-tiny", "kind": "ffn"}, "alpha": -2}),
        "residual_too_wide": ("residual", {"x": x64, "sublayer": {"model": "chars-small", "layer": 1}}),
        "residual_bad_shape": ("residual", {"x": [[1, 2]], "f": [[1, 2, 3]]}),
        "residual_unknown_model": ("residual", {"x": [[1, 2]], "sublayer": {"model": "nope"}}),
        "layernorm": ("layernorm", {"x": x3, "eps": 1e-5}),
        "layernorm_vector": ("layernorm", {"x": [1.0, 2.0, 3.0], "gamma": [2, 2, 2], "beta": [1, 0, 0], "row": 0}),
        "layernorm_ragged": ("layernorm", {"x": [[1, 2], [3]]}),
        "layernorm_bad_eps": ("layernorm", {"x": [[1, 2]], "eps": "small"}),
        "layernorm_unknown": ("layernorm", {"x": [[1, 2]], "epsilon": 1}),
        "rmsnorm": ("rmsnorm", {"x": [[3.0, 4.0]], "eps": 1e-12}),
        "rmsnorm_row": ("rmsnorm", {"x": x3, "gamma": [1, 0.5, 2], "row": 1}),
        "batchnorm": ("batchnorm", {"x": x3, "gamma": [1, 1, 1], "beta": [0, 0, 1]}),
        "batchnorm_one_row": ("batchnorm", {"x": [[1, 2, 3]]}),
        "ffn_model": ("ffn", {"x": x8, "model": "stack-tiny", "layer": 0, "top_k": 3}),
        "ffn_stack": ("ffn", {"x": x8, "model": "stack-tiny", "activation": "relu"}),
        "ffn_init": ("ffn", {"x": x3, "init": {"d_ff": 6, "seed": 5}}),
        "ffn_explicit": ("ffn", {"x": [[1, 2]], "w1": [[1, 0], [0, 1], [1, 1]], "b1": [0, 0, -1],
                                 "w2": [[1, 0, 1], [0, 1, 1]], "b2": [0.5, -0.5], "activation": "gelu_tanh"}),
        "ffn_two_sources": ("ffn", {"x": x8, "init": {"d_ff": 16}, "model": "stack-tiny"}),
        "ffn_bad_layer": ("ffn", {"x": x8, "model": "stack-tiny", "layer": 7}),
        "block_text": ("block", {"model": "chars-small", "text": "Four score", "track": 3, "trace": False}),
        "block_tokens": ("block", {"model": "chars-small", "tokens": [1, 2, 3], "trace": False, "top_k": 2}),
        "block_trace_prefix": ("block", {"model": "chars-small", "tokens": [1, 2, 3], "trace": ["layers.0.", "hook_embed"]}),
        "block_overrides": ("block", {"model": "chars-small", "tokens": [4, 5], "overrides": {
            "alpha": 0.5, "placement": "post", "norm": "rmsnorm", "activation": "relu", "causal": False, "eps": 1e-6}}),
        "block_no_norm": ("block", {"model": "chars-small", "tokens": [4], "overrides": {"norm": "none", "residual": False}}),
        "block_edits": ("block", {"model": "chars-small", "tokens": [1, 2, 3], "param_edits": [
            {"name": "layers.0.norm1.weight", "index": 3, "value": 1.5},
            {"name": "layers.0.linear2.bias", "values": [0.0] * 64}]}),
        "block_stack": ("block", {"model": "stack-tiny", "x": x8, "track": 0}),
        "block_bad_token": ("block", {"model": "chars-small", "tokens": [1, 999]}),
        "block_bad_text": ("block", {"model": "chars-small", "text": "caf\u00e9"}),
        "block_bad_edit": ("block", {"model": "chars-small", "tokens": [1], "param_edits": [{"name": "nope", "index": 0, "value": 1}]}),
        "block_stack_tokens": ("block", {"model": "stack-tiny", "tokens": [1]}),
        "gradflow": ("gradflow", {"n_layers": 4, "d_model": 16, "n_heads": 2, "d_ff": 32, "residual": False,
                                  "norm": "layernorm", "batch": 2, "seq_len": 4, "seed": 1}),
        "gradflow_post": ("gradflow", {"n_layers": 2, "d_model": 8, "n_heads": 2, "d_ff": 16, "placement": "post",
                                       "norm": "rmsnorm", "activation": "gelu_tanh", "alpha": 0.5, "batch": 1, "seq_len": 3}),
        "gradflow_bad_heads": ("gradflow", {"n_heads": 5}),
        "gradflow_too_big": ("gradflow", {"n_layers": 4, "d_model": 32, "d_ff": 64, "batch": 4, "seq_len": 16}),
        "runs": ("runs", {"task": "copy", "steps": 10, "batch": 4, "seq_len": 8, "label": "keeps going", "precision": "bf16",
                          "config": {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 2, "placement": "post"}}),
        "runs_chars": ("runs", {"task": "chars", "steps": 5, "lr": 3e-3, "warmup": 2, "weight_decay": 0.1, "clip": 1.0,
                                "optimizer": "adam", "seed": 3, "grad_norm_every": 1, "config": {"d_model": 8, "n_heads": 2}}),
        "runs_bad_config": ("runs", {"task": "sort", "config": {"d_model": 10, "n_heads": 3}}),
        "runs_bad_task": ("runs", {"task": "poetry", "steps": 0}),
    }
    for k, (endpoint, body) in reqs.items():
        write("api_json", k + ".json", E[endpoint] + json.dumps(body, ensure_ascii=False))
    raw = {
        "layernorm_malformed": "1{\"x\": [[1, 2]",
        "layernorm_array": "1[1, 2]",
        "block_empty_body": "5",
        "residual_null_fields": "0{\"x\": null, \"f\": null}",
        "ffn_deep_nesting": "4{\"x\": [[[[[[1]]]]]]}",
        "rmsnorm_big_numbers": "2{\"x\": [[1e308, -1e308, 5e-324]], \"gamma\": [1e38, 1, 1]}",
        "block_invalid_utf8": b"5{\"model\": \"chars-small\", \"text\": \"\xff\xfe\"}",
        "layernorm_empty_row": "1{\"x\": [[]]}",
        "residual_overflow": "0{\"x\": [[1e38, 1e38]], \"f\": [[1e38, 1e38]]}",
        "batchnorm_extremes": "3{\"x\": [[1e38, -1e38], [3e38, 1]]}",
        "rmsnorm_row_unsigned": "2{\"x\": [[1]], \"row\": 18446744073709551615}",
        "block_nul_text": "5{\"model\": \"chars-small\", \"text\": \"\\u0000\"}",
        "block_off_all_prefixes": "5{\"model\": \"chars-small\", \"tokens\": [1], \"overrides\": {\"alpha\": 0, \"residual\": \"off\"}, \"trace\": [], \"top_k\": 50}",
        "gradflow_edges": "6{\"d_model\": 32, \"n_heads\": 32, \"d_ff\": 1, \"n_layers\": 1, \"batch\": 1, \"seq_len\": 1, \"eps\": 1e-12, \"dropout\": 0.99}",
    }
    for k, v in raw.items():
        write("api_json", k + ".json", v)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    blocklab = os.path.abspath(sys.argv[1])
    shutil.rmtree(CORPUS, ignore_errors=True)
    safetensors_corpus(blocklab)
    config_corpus()
    api_corpus()
    for name in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, name))
        size = sum(os.path.getsize(os.path.join(CORPUS, name, f)) for f in files)
        print("%s: %d files, %d bytes" % (name, len(files), size))


if __name__ == "__main__":
    main()
