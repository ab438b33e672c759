"""Tests of the Python module `blocklab` (docs/python.md) against the committed PyTorch fixtures (no PyTorch needed).

Run:  PYTHONPATH=build/python /usr/bin/python3 -m unittest discover -s tests/python -v
(ctest runs each TestCase class below as its own test: python_module.<Class>.)

Fixtures: tests/fixtures/parity/ (tools/make_fixtures.py: y, trace.<name>, grad.x, grad.<param> in float64),
tests/fixtures/hooks/ (tools/make_hook_fixtures.py: base.*, patch.<name>.mask/.values, patched.<name>.*) and
tests/fixtures/gpt2/ (tools/make_gpt2_fixtures.py: GPT-2 checkpoint folders and their expected.safetensors).
"""
import glob
import json
import os
import sys
import tempfile
import threading
import time
import unittest

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import safetensors_lite  # noqa: E402

import blocklab  # noqa: E402

PARITY = os.path.join(ROOT, "tests", "fixtures", "parity")
HOOKS = os.path.join(ROOT, "tests", "fixtures", "hooks")
GPT2_DIR = os.path.join(ROOT, "tests", "fixtures", "gpt2")
INTERNAL = ("hook_mean", "hook_rstd", "hook_normalized")


def load_io(path):
    return safetensors_lite.load(path)[0]


def cases(folder):
    return sorted(os.path.basename(p)[: -len(".model.safetensors")] for p in glob.glob(os.path.join(folder, "*.model.safetensors")))


def rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"shape {got.shape} != {want.shape}")
    inf = np.isinf(want)  # the causal mask's -inf in hook_scores: the same elements, the same sign
    if inf.any():
        if not np.array_equal(got[inf], want[inf]):
            return float("inf")
        got, want = got[~inf], want[~inf]
    return float(np.max(np.abs(got - want), initial=0.0)) / max(1.0, float(np.max(np.abs(want), initial=0.0)))


class Close:
    def assertClose(self, got, want, tol, what=""):
        e = rel_err(got, want)
        self.assertLessEqual(e, tol, f"{what}: error {e:.3g} > {tol:g}")


def cross_entropy(logits, targets):
    """Mean cross-entropy of logits [..., V] against integer targets [...], in float64."""
    z = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    t = np.asarray(targets).reshape(-1)
    top = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    return float((lse - z[np.arange(len(t)), t]).mean())


def where_patch(mask, values):
    """A hook that replaces value where mask is set, as the fixture's torch.where(mask, values, value)."""
    m = mask.astype(bool)

    def fn(value, name):
        return np.where(m, values, value)
    return fn


class Forward(unittest.TestCase, Close):
    """m(x), run_with_cache and backward against every parity fixture (float64 to 1e-9, float32 to 1e-4)."""

    def test_every_parity_fixture_float64(self):
        checked = 0
        for case in cases(PARITY):
            if case.startswith("optim"):
                continue  # optimizer steps: not the module's
            with self.subTest(case=case):
                io = load_io(os.path.join(PARITY, case + ".io.safetensors"))
                m = blocklab.load(os.path.join(PARITY, case + ".model.safetensors"), dtype="float64")
                self.assertEqual(m.dtype, np.float64)
                lm = m.config["vocab_size"] is not None
                x = io["tokens"] if lm else io["x"]
                y, cache = m.run_with_cache(x)
                self.assertClose(y, io["logits"] if lm else io["y"], 1e-9, "y")
                self.assertClose(m(x), y, 0, "call == run_with_cache")
                traced = {k[len("trace."):]: v for k, v in io.items() if k.startswith("trace.")}
                self.assertTrue(set(traced) <= set(cache), set(traced) - set(cache))
                self.assertEqual(list(cache), m.hook_names(tokens=lm))  # data-flow order, every name
                for name, want in traced.items():
                    self.assertClose(cache[name], want, 1e-9, name)
                if lm:
                    g = m.backward(io["tokens"], targets=io["targets"])
                    loss = io["loss"] if "loss" in io else io["step1.loss"]  # lm_adamw: the first step's
                    self.assertAlmostEqual(g["loss"], float(loss[0]), delta=1e-10)
                else:
                    g = m.backward(io["x"], io["dy"])
                    self.assertClose(g["x"], io["grad.x"], 1e-9, "grad.x")
                for p in m.params:
                    if "grad." + p in io:
                        self.assertClose(g["grad." + p], io["grad." + p], 1e-9, "grad." + p)
                self.assertEqual(sorted(k for k in g if k.startswith("grad.")), sorted("grad." + p for p in m.params))
                checked += 1
        self.assertEqual(checked, 190)  # 180 sweep, 8 nn.TransformerEncoder, 2 language models

    def test_outputs_are_plain_arrays(self):
        """Outputs are NumPy arrays that own their memory (filled once from the engine), C-contiguous, writable."""
        case = "lm_positions"
        io = load_io(os.path.join(PARITY, case + ".io.safetensors"))
        m = blocklab.load(os.path.join(PARITY, case + ".model.safetensors"))
        _, cache = m.run_with_cache(io["tokens"], names_filter=["blocks.0.attn.hook_pattern"])
        g = m.backward(io["tokens"], io["targets"], wrt=["blocks.0.hook_resid_mid"])
        arrays = [m(io["tokens"]), cache["blocks.0.attn.hook_pattern"], g["grad.embed.weight"],
                  g["blocks.0.hook_resid_mid"], m.params["head.weight"]]
        for a in arrays:
            self.assertIsInstance(a, np.ndarray)
            self.assertEqual(a.dtype, np.float32)
            self.assertTrue(a.flags["C_CONTIGUOUS"] and a.flags["OWNDATA"] and a.flags["WRITEABLE"])
        self.assertIsInstance(g["loss"], float)
        self.assertEqual(json.loads(m.metadata["blocklab.config"])["d_model"], m.config["d_model"])
        self.assertTrue(blocklab.__version__)

    def test_float32(self):
        for case in ("sweep_layernorm_post_gelu_res07_causal_final", "lm_positions", "torch_encoder_pre_gelu_causal"):
            with self.subTest(case=case):
                io = load_io(os.path.join(PARITY, case + ".io.safetensors"))
                m = blocklab.load(os.path.join(PARITY, case + ".model.safetensors"))
                self.assertEqual(m.dtype, np.float32)
                lm = m.config["vocab_size"] is not None
                y = m(io["tokens"] if lm else io["x"])
                self.assertEqual(y.dtype, np.float32)
                self.assertClose(y, io["logits"] if lm else io["y"], 1e-5, "y")

    def test_unbatched_input_has_no_batch_axis(self):
        case = "pre_layernorm_causal_final"
        io = load_io(os.path.join(HOOKS, case + ".io.safetensors"))
        m = blocklab.load(os.path.join(HOOKS, case + ".model.safetensors"), dtype="float64")
        x1 = io["x"][1]  # [T, d]
        y, cache = m.run_with_cache(x1)
        self.assertEqual(y.shape, x1.shape)
        self.assertClose(y, io["base.y"][1], 1e-9)
        T, H = x1.shape[0], m.config["n_heads"]
        self.assertEqual(cache["blocks.0.attn.hook_pattern"].shape, (H, T, T))
        self.assertEqual(cache["blocks.0.attn.hook_z"].shape, (T, H, m.config["d_model"] // H))
        self.assertEqual(cache["blocks.0.ln1.hook_rstd"].shape, (T,))
        g = m.backward(x1, io["dy"][1], wrt=["blocks.1.hook_resid_pre"])
        self.assertEqual(g["x"].shape, x1.shape)
        self.assertClose(g["blocks.1.hook_resid_pre"], io["base.grad.blocks.1.hook_resid_pre"][1], 1e-9)

    def test_inputs_converted(self):
        """float32 input to a float64 model, non-contiguous arrays and nested lists all give the same y."""
        case = "pre_none_tanh"
        io = load_io(os.path.join(HOOKS, case + ".io.safetensors"))
        m = blocklab.load(os.path.join(HOOKS, case + ".model.safetensors"), dtype=np.float64)
        want = m(io["x"].astype(np.float64))
        self.assertClose(m(io["x"]), want, 0)
        fortran = np.asfortranarray(io["x"])
        self.assertClose(m(fortran), want, 0)
        strided = np.concatenate([io["x"], io["x"]], axis=2)[:, :, ::2]  # every other column: not contiguous
        self.assertClose(m(np.ascontiguousarray(io["x"][:, :, :])), want, 0)
        self.assertEqual(m(strided).shape, io["x"].shape)
        self.assertClose(m(io["x"].tolist()), want, 0)

    def test_language_model_tokens(self):
        case = "lm_positions"
        io = load_io(os.path.join(PARITY, case + ".io.safetensors"))
        m = blocklab.load(os.path.join(PARITY, case + ".model.safetensors"), dtype="float64")
        want = io["logits"]
        for tokens in (io["tokens"], io["tokens"].astype(np.int32), io["tokens"].astype(np.uint8), io["tokens"].tolist()):
            self.assertClose(m(tokens), want, 1e-9)
        self.assertClose(m(io["tokens"][0]), want[0], 1e-9)  # [T] -> [T, V]
        # on x (float), a language model runs its block stack: y, and the cache has no embedding names
        y, cache = m.run_with_cache(np.zeros((3, m.config["d_model"])))
        self.assertEqual(y.shape, (3, m.config["d_model"]))
        self.assertNotIn("hook_embed", cache)


class Hooks(unittest.TestCase, Close):
    """run_with_hooks and backward(fwd_hooks=) for every patchable name of every hook fixture (5 models)."""

    def run_case(self, case, in_place=False):
        io = load_io(os.path.join(HOOKS, case + ".io.safetensors"))
        m = blocklab.load(os.path.join(HOOKS, case + ".model.safetensors"), dtype="float64")
        lm = m.config["vocab_size"] is not None
        first, last = "blocks.0.hook_resid_pre", f"blocks.{m.config['n_layers'] - 1}.hook_resid_post"
        names = [n for n in m.hook_names(tokens=lm) if not n.endswith(INTERNAL)]
        # The unpatched backward: every activation's gradient.
        if lm:
            g = m.backward(io["tokens"], io["targets"], wrt=names)
            self.assertAlmostEqual(g["loss"], float(io["base.loss"][0]), delta=1e-12)
        else:
            self.assertClose(m(io["x"]), io["base.y"], 1e-9, "base.y")
            g = m.backward(io["x"], io["dy"], wrt=names)
        for n in names:
            self.assertClose(g[n], io["base.grad." + n], 1e-9, "base.grad." + n)
        patched = 0
        for name in names:
            mask, values = io[f"patch.{name}.mask"], io[f"patch.{name}.values"]
            pre = f"patched.{name}."
            if in_place:
                def fn(value, hook_name, _m=mask.astype(bool), _v=values):
                    self.assertEqual(hook_name, name)
                    value[_m] = _v[_m]  # returns None: the changed value is kept
            else:
                fn = where_patch(mask, values)
            hooks = [(name, fn)]
            with self.subTest(case=case, name=name):
                if lm:
                    logits = m.run_with_hooks(io["tokens"], fwd_hooks=hooks)
                    self.assertAlmostEqual(cross_entropy(logits, io["targets"]), float(io[pre + "loss"][0]), delta=1e-12)
                    g = m.backward(io["tokens"], io["targets"], wrt=[name, first, last], fwd_hooks=hooks)
                    self.assertAlmostEqual(g["loss"], float(io[pre + "loss"][0]), delta=1e-12)
                else:
                    self.assertClose(m.run_with_hooks(io["x"], fwd_hooks=hooks), io[pre + "y"], 1e-9, pre + "y")
                    g = m.backward(io["x"], io["dy"], wrt=[name, first, last], fwd_hooks=hooks)
                    self.assertClose(g["x"], io[pre + "grad.x"], 1e-9, pre + "grad.x")
                for p in m.params:
                    self.assertClose(g["grad." + p], io[pre + "grad." + p], 1e-9, pre + "grad." + p)
                for n in {name, first, last}:
                    self.assertClose(g[n], io[pre + "wrt." + n], 1e-9, pre + "wrt." + n)
                patched += 1
        return patched

    def test_every_name_of_every_model(self):
        total = 0
        for case in cases(HOOKS):
            total += self.run_case(case)
        self.assertEqual(total, 180)  # as engine_hooks_test: every patchable name of the 5 models

    def test_in_place_patch(self):
        self.assertGreater(self.run_case("post_layernorm_relu_alpha", in_place=True), 20)

    def test_predicate_name_and_order(self):
        case = "post_layernorm_relu_alpha"
        io = load_io(os.path.join(HOOKS, case + ".io.safetensors"))
        m = blocklab.load(os.path.join(HOOKS, case + ".model.safetensors"), dtype="float64")
        seen = []
        y = m.run_with_hooks(io["x"], fwd_hooks=[(lambda n: n.endswith("hook_resid_pre"), lambda v, n: seen.append(n))])
        self.assertEqual(seen, ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"])
        self.assertClose(y, io["base.y"], 1e-9)  # hooks that return None and change nothing change nothing
        # two hooks on one name run in the order given, each seeing the previous one's result
        order = []
        m.run_with_hooks(io["x"], fwd_hooks=[("blocks.0.hook_mlp_out", lambda v, n: order.append(1) or v * 0),
                                             ("blocks.0.hook_mlp_out", lambda v, n: order.append(float(np.abs(v).max())))])
        self.assertEqual(order, [1, 0.0])

    def test_ablate_head(self):
        """Zeroing head h's pattern removes exactly that head's slice of hook_z."""
        case = "pre_layernorm_causal_final"
        io = load_io(os.path.join(HOOKS, case + ".io.safetensors"))
        m = blocklab.load(os.path.join(HOOKS, case + ".model.safetensors"), dtype="float64")

        def ablate(value, name):
            value[:, 1] = 0.0  # [B, H, T, T]: head 1

        _, base = m.run_with_cache(io["x"], names_filter=["blocks.0.attn.hook_z"])
        _, cache = m.run_with_cache(io["x"], names_filter=["blocks.0.attn.hook_z"],
                                    fwd_hooks=[("blocks.0.attn.hook_pattern", ablate)])
        z, z0 = cache["blocks.0.attn.hook_z"], base["blocks.0.attn.hook_z"]
        self.assertTrue(np.all(z[:, :, 1] == 0))
        self.assertTrue(np.array_equal(z[:, :, 0], z0[:, :, 0]))


class Cache(unittest.TestCase, Close):
    """names_filter as a list, a name, a predicate; the cache holds each value as the model saw it then."""

    def setUp(self):
        case = "post_layernorm_relu_alpha"
        self.io = load_io(os.path.join(HOOKS, case + ".io.safetensors"))
        self.m = blocklab.load(os.path.join(HOOKS, case + ".model.safetensors"), dtype="float64")

    def test_filters(self):
        x = self.io["x"]
        want = ["blocks.1.hook_resid_mid", "blocks.0.attn.hook_pattern"]
        _, c = self.m.run_with_cache(x, names_filter=want)
        self.assertEqual(list(c), ["blocks.0.attn.hook_pattern", "blocks.1.hook_resid_mid"])  # data-flow order
        _, c = self.m.run_with_cache(x, names_filter="blocks.0.hook_sum1")
        self.assertEqual(list(c), ["blocks.0.hook_sum1"])
        _, c = self.m.run_with_cache(x, names_filter=lambda n: n.startswith("blocks.1.ln2."))
        self.assertEqual(list(c), ["blocks.1.ln2.hook_mean", "blocks.1.ln2.hook_rstd", "blocks.1.ln2.hook_normalized",
                                   "blocks.1.ln2.hook_out"])
        _, c = self.m.run_with_cache(x, names_filter=[])
        self.assertEqual(c, {})
        _, full = self.m.run_with_cache(x)
        self.assertEqual(list(full), self.m.hook_names())
        for n, v in c.items():
            self.assertClose(v, full[n], 0, n)

    def test_value_at_its_moment(self):
        """Post placement: ln1.hook_out and hook_resid_mid are one array. A patch of resid_mid comes after
        ln1.hook_out was visited; the cache keeps ln1.hook_out as it was then (a copy made in the hook)."""
        x = self.io["x"]
        _, base = self.m.run_with_cache(x, names_filter=["blocks.0.ln1.hook_out"])
        _, c = self.m.run_with_cache(x, names_filter=["blocks.0.ln1.hook_out", "blocks.0.hook_resid_mid",
                                                      "blocks.1.hook_resid_pre"],
                                     fwd_hooks=[("blocks.0.hook_resid_mid", lambda v, n: np.zeros_like(v))])
        self.assertClose(c["blocks.0.ln1.hook_out"], base["blocks.0.ln1.hook_out"], 0)
        self.assertGreater(np.abs(c["blocks.0.ln1.hook_out"]).max(), 0.1)
        self.assertTrue(np.all(c["blocks.0.hook_resid_mid"] == 0))
        # the cache's arrays are the caller's own: a later call does not change them
        keep = c["blocks.1.hook_resid_pre"].copy()
        self.m(x * 2)
        self.assertClose(c["blocks.1.hook_resid_pre"], keep, 0)


class Errors(unittest.TestCase):
    """Bad input raises ValueError with one line naming what (never a crash)."""

    def test_a_bad_gemm_switch_is_refused_at_import(self):
        import subprocess
        for var, value, want in (("BLOCKLAB_GEMM", "mkl", "BLOCKLAB_GEMM: expected openblas or onednn"),
                                 ("BLOCKLAB_BF16", "yes", "BLOCKLAB_BF16: expected emulate")):
            got = subprocess.run([sys.executable, "-c", "import blocklab"], capture_output=True, text=True,
                                 timeout=60, env=dict(os.environ, **{var: value}))
            self.assertNotEqual(got.returncode, 0)
            self.assertIn("ImportError: " + want, got.stderr)
        ok = subprocess.run([sys.executable, "-c", "import blocklab"], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, BLOCKLAB_GEMM="onednn"))
        self.assertEqual(ok.returncode, 0, ok.stderr)

    def setUp(self):
        self.m = blocklab.load(os.path.join(HOOKS, "pre_layernorm_causal_final.model.safetensors"))
        self.lm = blocklab.load(os.path.join(HOOKS, "lm_pre_positions.model.safetensors"))
        self.x = np.zeros((2, 3, 8), np.float32)

    def raises(self, fragment, fn, *args, **kwargs):
        with self.assertRaises(ValueError) as cm:
            fn(*args, **kwargs)
        msg = str(cm.exception)
        self.assertIn(fragment, msg)
        self.assertNotIn("\n", msg)
        return msg

    def test_inputs(self):
        m, x = self.m, self.x
        self.raises("x: expected an array, got None", m, None)
        self.raises("x: expected last dimension d_model = 8, got [2, 3, 5]", m, np.zeros((2, 3, 5), np.float32))
        self.raises("x: expected shape [B, T, 8] or [T, 8], got [8]", m, np.zeros(8, np.float32))
        self.raises("x: expected shape [B, T, 8] or [T, 8], got [1, 2, 3, 8]", m, np.zeros((1, 2, 3, 8)))
        self.raises("x: expected at least one token, got shape [0, 8]", m, np.zeros((0, 8)))
        self.raises("x: expected a float array [B, T, 8] or [T, 8], got dtype int64 (token ids need a language model",
                    m, np.zeros((2, 3, 8), np.int64))
        self.raises("got dtype complex128", m, np.zeros((2, 3, 8), complex))
        self.raises("got dtype object", m, np.array([[None] * 8]))
        self.raises("x: expected a float array", m, "not an array")
        self.raises("dy: expected shape [2, 3, 8] (as x), got [2, 2, 8]", m.backward, x, np.zeros((2, 2, 8)))
        self.raises("dy: expected an array, got None", m.backward, x, None)
        self.raises("dy: expected an array, got None", m.backward, x)
        self.raises("backward: expected dy (a stack) or targets (a language model), got both", m.backward, x, x, targets=x)
        # huge: refused before anything is allocated
        self.raises("GiB of activations, expected at most 16 GiB", m, np.broadcast_to(np.float32(0), (1, 200000, 8)))
        self.raises("x: a forward on [B = 1, T = 1000000000] would keep", m, np.broadcast_to(np.float32(0), (1, 10**9, 8)))
        self.raises("tokens: a forward on [B = 100000, T = 100000] would keep", self.lm.backward,
                    np.broadcast_to(np.int64(0), (10**5, 10**5)), np.broadcast_to(np.int64(0), (10**5, 10**5)))

    def test_tokens(self):
        lm = self.lm
        self.raises("tokens[3]: expected an id in 0..6, got 7", lm, np.array([[1, 2, 3, 7]]))
        self.raises("tokens[0]: expected an id in 0..6, got -1", lm, np.array([-1, 2]))
        self.raises("tokens[0]: expected an id in 0..6, got 4294967296", lm, np.array([2**32], np.int64))
        self.raises("tokens: expected shape [B, T] or [T], got [1, 1, 2]", lm, np.zeros((1, 1, 2), np.int32))
        self.raises("tokens: expected at most max_seq_len = 6 positions, got 7", lm, np.zeros((1, 7), np.int32))
        self.raises("targets: expected shape [2, 4] (as tokens), got [2, 3]", lm.backward, np.zeros((2, 4), np.int32),
                    np.zeros((2, 3), np.int32))
        self.raises("targets: expected integer ids [B, T] or [T], got dtype float64", lm.backward,
                    np.zeros((2, 4), np.int32), np.zeros((2, 4)))

    def test_hook_names(self):
        m, x = self.m, self.x
        msg = self.raises('fwd_hooks blocks.9.hook_z: expected an activation name of this model', m.run_with_hooks, x,
                          fwd_hooks=[("blocks.9.hook_z", lambda v, n: None)])
        self.assertIn('got "blocks.9.hook_z"', msg)
        self.raises('names_filter nope: expected an activation name', m.run_with_cache, x, names_filter=["nope"])
        self.raises('wrt nope: expected an activation name', m.backward, x, x, wrt=["nope"])
        self.raises("wrt blocks.0.ln1.hook_rstd: computed inside its norm, it cannot be patched or differentiated",
                    m.backward, x, x, wrt=["blocks.0.ln1.hook_rstd"])
        self.raises("fwd_hooks[0]: expected a (name, fn) pair, got str", m.run_with_hooks, x, fwd_hooks=["blocks.0.hook_z"])
        self.raises("fwd_hooks: expected a list of (name, fn) pairs, got int", m.run_with_hooks, x, fwd_hooks=3)
        self.raises("fwd_hooks[0]: expected fn callable, got int", m.run_with_hooks, x, fwd_hooks=[("blocks.0.hook_attn_out", 3)])
        self.raises("names_filter: expected None, a list of names or a predicate, got int", m.run_with_cache, x, names_filter=3)
        self.raises("wrt hook_embed: expected an activation name", self.lm.backward, np.zeros((1, 2, 8)), np.zeros((1, 2, 8)),
                    wrt=["hook_embed"])

    def test_hook_results(self):
        m, x = self.m, self.x
        name = "blocks.0.attn.hook_pattern"
        self.raises("fwd_hooks blocks.0.attn.hook_pattern: expected the hook to return shape [2, 2, 3, 3] (the "
                    "activation's), got [2, 3]", m.run_with_hooks, x, fwd_hooks=[(name, lambda v, n: np.zeros((2, 3)))])
        self.raises("fwd_hooks blocks.0.attn.hook_pattern: expected the hook to return None or an array of shape "
                    "[2, 2, 3, 3], got dtype <U", m.run_with_hooks, x, fwd_hooks=[(name, lambda v, n: "abc")])
        # unbatched input: the hook's value and its result have no batch axis
        self.raises("expected the hook to return shape [2, 3, 3]", m.run_with_hooks, x[0],
                    fwd_hooks=[(name, lambda v, n: np.zeros((1, 2, 3, 3)))])
        # a norm's internals may be read, not changed
        self.raises("hook blocks.0.ln1.hook_rstd: computed inside its norm, a hook may read it but not change it",
                    m.run_with_hooks, x, fwd_hooks=[("blocks.0.ln1.hook_rstd", lambda v, n: v + 1)])
        m.run_with_hooks(x, fwd_hooks=[("blocks.0.ln1.hook_rstd", lambda v, n: None)])

    def test_user_exception_propagates_as_itself(self):
        class Mine(Exception):
            pass

        def bad(v, n):
            raise Mine("from the hook " + n)
        with self.assertRaises(Mine) as cm:
            self.m.run_with_hooks(self.x, fwd_hooks=[("blocks.1.hook_mlp_out", bad)])
        self.assertEqual(str(cm.exception), "from the hook blocks.1.hook_mlp_out")
        with self.assertRaises(KeyError):
            self.m.backward(self.x, self.x, fwd_hooks=[("blocks.0.hook_resid_pre", lambda v, n: {}["k"])])
        # the model works afterwards, without the hooks
        y, c = self.m.run_with_cache(self.x, names_filter=["blocks.1.hook_mlp_out"])
        self.assertEqual(list(c), ["blocks.1.hook_mlp_out"])

    def test_hook_calling_its_model(self):
        m, x = self.m, self.x
        self.raises("model: called from inside one of its own hooks", m.run_with_hooks, x,
                    fwd_hooks=[("blocks.0.hook_attn_out", lambda v, n: m(x))])
        other = blocklab.load(os.path.join(HOOKS, "pre_layernorm_causal_final.model.safetensors"))
        m.run_with_hooks(x, fwd_hooks=[("blocks.0.hook_attn_out", lambda v, n: other(x) * 0 + v)])  # another model: fine

    def test_load_save_params(self):
        self.raises("/nonexistent/m.safetensors: cannot open", blocklab.load, "/nonexistent/m.safetensors")
        self.raises("path: expected a file path, got None", blocklab.load, None)
        self.raises("dtype: expected float32 or float64, got 'int8'", blocklab.load,
                    os.path.join(HOOKS, "pre_none_tanh.model.safetensors"), dtype="int8")
        self.raises(os.path.join(HOOKS, "pre_none_tanh.io.safetensors"), blocklab.load,
                    os.path.join(HOOKS, "pre_none_tanh.io.safetensors"))  # not a model file
        self.raises('set_param nope: expected a parameter name of this model', self.m.set_param, "nope", np.zeros(3))
        self.raises("set_param layers.0.linear1.bias: expected shape [16], got [15]", self.m.set_param,
                    "layers.0.linear1.bias", np.zeros(15))
        self.raises("set_param layers.0.linear1.bias: expected a float array, got dtype <U1", self.m.set_param,
                    "layers.0.linear1.bias", np.array(["a"] * 16))
        self.raises("set_param layers.0.linear1.bias: expected an array, got None", self.m.set_param,
                    "layers.0.linear1.bias", None)
        self.raises("threads: expected an integer in 1..1024, got 0", blocklab.set_threads, 0)
        self.raises("threads: expected an integer >= 1, got 'x'", blocklab.set_threads, "x")
        self.raises("set_param: expected a parameter name (str), got int", self.m.set_param, 3, np.zeros(3))

    def test_junk_never_crashes(self):
        """Every entry point given junk raises ValueError (or, for a missing or extra argument, TypeError)."""
        junk = [None, 0, -1, 2**70, 1.5, "s", b"b", [], [[]], [[[]]], {}, object(), np.array([]), np.zeros((0, 0, 8)),
                np.zeros((1, 1, 8), object), np.zeros((1, 2, 3, 4, 8)), np.full((1, 2, 8), np.nan),
                np.array([[2**62]]), np.zeros((1, 2), np.float16), np.ones((2, 2), bool), lambda *a: None]
        lm, m = self.lm, self.m
        calls = [lambda j: m(j), lambda j: lm(j), lambda j: m.run_with_cache(self.x, names_filter=j),
                 lambda j: m.run_with_hooks(self.x, fwd_hooks=j), lambda j: m.run_with_hooks(self.x, fwd_hooks=[(j, j)]),
                 lambda j: m.run_with_hooks(self.x, fwd_hooks=[("blocks.0.hook_resid_mid", lambda v, n: j)]),
                 lambda j: m.backward(self.x, j), lambda j: m.backward(j, self.x), lambda j: m.backward(self.x, self.x, wrt=j),
                 lambda j: lm.backward(np.zeros((1, 2), np.int32), j), lambda j: lm.backward(j, np.zeros((1, 2), np.int32)),
                 lambda j: m.set_param("layers.0.linear1.bias", j), lambda j: m.set_param(j, j),
                 lambda j: blocklab.load(j), lambda j: blocklab.load(os.path.join(HOOKS, "pre_none_tanh.model.safetensors"), dtype=j),
                 lambda j: m.save(j) if not isinstance(j, (str, bytes)) else None]  # a str is a file name
        outcomes = 0
        for i, call in enumerate(calls):
            for j in junk:
                try:
                    call(j)
                except ValueError as e:
                    self.assertNotIn("\n", str(e))
                    outcomes += 1
                except Exception as e:  # noqa: BLE001
                    self.fail(f"call {i} with {j!r:.40}: {type(e).__name__}: {e}")
                else:
                    outcomes += 1
        self.assertEqual(outcomes, len(calls) * len(junk))


class Params(unittest.TestCase, Close):
    """params (copies), set_param, save and load again."""

    def setUp(self):
        self.path = os.path.join(HOOKS, "pre_none_tanh.model.safetensors")  # pre, no norm, no final norm
        self.io = load_io(os.path.join(HOOKS, "pre_none_tanh.io.safetensors"))

    def test_params_are_copies(self):
        m = blocklab.load(self.path)
        y = m(self.io["x"])
        p = m.params
        file = safetensors_lite.load(self.path)[0]
        self.assertEqual(list(p), list(m.params))
        self.assertEqual(set(p), set(file))
        for k, v in file.items():
            self.assertTrue(np.array_equal(p[k], v), k)
        p["layers.1.linear2.bias"] += 100
        self.assertClose(m(self.io["x"]), y, 0)

    def test_set_param_changes_y(self):
        m = blocklab.load(self.path, dtype="float64")
        y = m(self.io["x"])
        # the last block's FFN output bias adds to y directly (pre placement, no final norm, alpha 1)
        b = m.params["layers.1.linear2.bias"]
        delta = np.arange(8, dtype=np.float64) / 8
        m.set_param("layers.1.linear2.bias", b + delta)
        self.assertClose(m(self.io["x"]) - y, np.broadcast_to(delta, y.shape), 1e-12)
        self.assertClose(m.params["layers.1.linear2.bias"], b + delta, 0)
        m.set_param("layers.1.linear2.bias", b.astype(np.float32).tolist())  # lists and float32 are converted
        self.assertClose(m(self.io["x"]), y, 1e-12)

    def test_save_load_round_trip(self):
        with tempfile.TemporaryDirectory() as d:
            for dtype in ("float32", "float64"):
                m = blocklab.load(self.path, dtype=dtype)
                m.set_param("layers.0.linear1.weight", m.params["layers.0.linear1.weight"] * 0.5)
                out = os.path.join(d, f"m_{dtype}.safetensors")
                m.save(out)
                again = blocklab.load(out)
                self.assertEqual(again.dtype, np.dtype(dtype))  # an F64 file loads as float64
                self.assertEqual(again.config, m.config)
                for k, v in m.params.items():
                    self.assertTrue(np.array_equal(again.params[k], v), k)
                self.assertClose(again(self.io["x"]), m(self.io["x"]), 0)
            m.save(os.path.join(d, "as32.safetensors"), dtype="float32")
            self.assertEqual(blocklab.load(os.path.join(d, "as32.safetensors")).dtype, np.float32)


class Threads(unittest.TestCase):
    """The GIL is released while the engine computes: another Python thread runs during a forward."""

    def test_gil_released_during_forward(self):
        # Hook A (block 0's input) wakes the main thread while the engine runs; hook B (the last block's output)
        # notes when the engine got there. Between them the engine computes four blocks on [1, 1024, 128]
        # (hundreds of milliseconds). With the GIL released the main thread runs at once (milliseconds after A);
        # held, it could run only when hook B takes the GIL back into Python, at the end.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "big.safetensors")
            rng = np.random.default_rng(0)
            src = blocklab.load(os.path.join(HOOKS, "pre_layernorm_causal_final.model.safetensors"))
            cfg = dict(src.config, d_model=128, n_heads=4, d_ff=512, n_layers=4)
            params = {}
            small = safetensors_lite.load(os.path.join(HOOKS, "pre_layernorm_causal_final.model.safetensors"))[0]
            for k in small:
                shape = {"in_proj_weight": (384, 128), "in_proj_bias": (384,), "out_proj.weight": (128, 128),
                         "linear1.weight": (512, 128), "linear1.bias": (512,), "linear2.weight": (128, 512)}
                s = next((v for t, v in shape.items() if k.endswith(t)), (128,))
                params[k] = (rng.standard_normal(s) * 0.05).astype(np.float32)
            for i in (2, 3):
                for k in list(small):
                    if k.startswith("layers.1."):
                        params[k.replace("layers.1.", f"layers.{i}.")] = params[k].copy()
            safetensors_lite.save(path, params, {"blocklab.config": json.dumps(cfg)})
            m = blocklab.load(path)
        x = rng.standard_normal((1, 1024, 128)).astype(np.float32)
        inside = threading.Event()
        t = {}

        def hook_a(v, n):
            t["a"] = time.monotonic()
            inside.set()

        def hook_b(v, n):
            t["b"] = time.monotonic()

        def work():
            m.run_with_hooks(x, fwd_hooks=[("blocks.0.hook_resid_pre", hook_a), ("blocks.3.hook_resid_post", hook_b)])

        worker = threading.Thread(target=work)
        worker.start()
        self.assertTrue(inside.wait(60))
        t["main"] = time.monotonic()  # with the GIL held by the engine, this runs only once hook B takes it
        worker.join(120)
        compute, wait = t["b"] - t["a"], t["main"] - t["a"]
        self.assertGreater(compute, 0.05, "the forward was too short to tell")
        self.assertLess(wait, 0.5 * compute,
                        f"the main thread ran {wait:.3f} s after the engine started, of {compute:.3f} s computing")

    def test_two_threads_one_model(self):
        """Calls on one model from two threads run one at a time and each gets its own answer."""
        case = "post_rmsnorm_nores_final"
        io = load_io(os.path.join(HOOKS, case + ".io.safetensors"))
        m = blocklab.load(os.path.join(HOOKS, case + ".model.safetensors"), dtype="float64")
        xs = [io["x"] * s for s in (1.0, 2.0, 3.0)]
        want = [m(x) for x in xs]
        errors = []

        def work(i):
            for _ in range(30):
                if rel_err(m(xs[i]), want[i]) != 0:
                    errors.append(i)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])


class GPT2(unittest.TestCase, Close):
    """blocklab.load of a GPT-2 checkpoint folder (tests/fixtures/gpt2/, tools/make_gpt2_fixtures.py): logits, every
    cached activation, the loss and the gradients of every parameter and activation against PyTorch."""

    def check(self, case, dtype, fwd_tol, grad_tol):
        folder = os.path.join(GPT2_DIR, case)
        io = load_io(os.path.join(folder, "expected.safetensors"))
        m = blocklab.load(folder, dtype=dtype)
        self.assertEqual(m.dtype, np.dtype(dtype))
        self.assertTrue(m.config["tied_head"] and m.config["causal"] and m.config["final_norm"])
        self.assertEqual(m.metadata, {})  # a folder has no __metadata__
        self.assertNotIn("head.weight", m.params)
        logits, cache = m.run_with_cache(io["tokens"])
        self.assertClose(logits, io["logits"], fwd_tol, "logits")
        traced = {k[len("trace."):]: v for k, v in io.items() if k.startswith("trace.")}
        self.assertEqual(set(traced), set(cache) - {f"blocks.{i}.attn.hook_result" for i in range(m.config["n_layers"])})
        for name, want in traced.items():
            self.assertClose(cache[name], want, fwd_tol, name)
        wrt = [k[len("grad."):] for k in io if k.startswith("grad.") and k[len("grad."):] in cache]
        self.assertEqual(len(wrt), 16 * m.config["n_layers"] + 4)  # all but the norms' internals
        g = m.backward(io["tokens"], io["targets"], wrt=wrt)
        self.assertAlmostEqual(g["loss"], float(io["loss"]), delta=fwd_tol * max(1.0, float(io["loss"])))
        for p in m.params:
            self.assertClose(g["grad." + p], io["grad." + p], grad_tol, "grad." + p)
        for name in wrt:
            self.assertClose(g[name], io["grad." + name], grad_tol, "grad of " + name)
        return m, io

    def test_prefixed_and_plain_float64(self):
        for case in ("prefixed", "plain"):
            with self.subTest(case=case):
                self.check(case, np.float64, 1e-9, 1e-9)

    def test_prefixed_and_plain_float32(self):
        for case in ("prefixed", "plain"):
            with self.subTest(case=case):
                self.check(case, np.float32, 1e-4, 1e-3)

    def test_save_as_a_model_file_and_load_back(self):
        m, io = self.check("plain", np.float32, 1e-4, 1e-3)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "gpt2.safetensors")
            m.save(path)
            back = blocklab.load(path)
            self.assertEqual(back.config, m.config)
            self.assertClose(back(io["tokens"]), m(io["tokens"]), 0, "reloaded")
            self.assertEqual(json.loads(back.metadata["blocklab.config"])["tied_head"], True)

    def test_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(ValueError, "a folder without config.json"):
                blocklab.load(tmp)
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump({"n_embd": 32, "n_head": 5, "n_layer": 1, "n_positions": 8, "vocab_size": 10}, f)
            with self.assertRaisesRegex(ValueError, "key 'n_head': expected a divisor of n_embd 32, got 5"):
                blocklab.load(tmp)
        m = blocklab.load(os.path.join(GPT2_DIR, "plain"))
        with self.assertRaisesRegex(ValueError, "expected at most max_seq_len = 16 positions, got 17"):
            m(np.zeros((1, 17), np.int64))


class DocExample(unittest.TestCase):
    """docs/python.md's session runs, and prints what the page shows (numbers to their printed precision)."""

    def test_session(self):
        import re
        import subprocess
        with open(os.path.join(ROOT, "docs", "python.md"), encoding="utf-8") as f:
            text = f.read()
        tail = text[text.index("<!-- doc-example:"):]
        code = tail.split("```python\n", 1)[1].split("\n```", 1)[0]
        shown = tail.split("```text\n", 1)[1].split("\n```", 1)[0]
        got = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
        self.assertEqual(got.returncode, 0, got.stderr)
        number = re.compile(r"-?\d+\.\d+")
        got_lines, shown_lines = got.stdout.rstrip("\n").split("\n"), shown.split("\n")
        self.assertEqual(len(got_lines), len(shown_lines), got.stdout)
        for g, w in zip(got_lines, shown_lines):
            self.assertEqual(number.sub("#", g), number.sub("#", w), "the line's words")
            for a, b in zip(number.findall(g), number.findall(w)):
                self.assertLessEqual(abs(float(a) - float(b)), 2 * 10 ** -len(b.split(".")[1]), f"{g!r} vs {w!r}")

# ---- save_torch: PyTorch encoder modules as model files ------------------------------------------------
# The helper reads a module's attributes (nn.TransformerEncoderLayer's self_attn, linear1, norm_first, norm1,
# dropout, activation; nn.TransformerEncoder's layers and norm) and its state_dict. Stand-ins with those
# attributes, holding a parity fixture's parameters, check it without PyTorch; with PyTorch installed the same
# is checked against real modules and their forward.

def relu(x):  # named as F.relu is
    return x


def gelu(x):
    return x


class _Obj:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def stand_in_encoder(model, stack=True):
    c = model.config
    act = {"relu": relu, "gelu": gelu, "gelu_tanh": _Obj(__name__="GELU", approximate="tanh")}[c["activation"]]
    layer = _Obj(self_attn=_Obj(embed_dim=c["d_model"], num_heads=c["n_heads"]), linear1=_Obj(out_features=c["d_ff"]),
                 norm_first=c["placement"] == "pre", norm1=_Obj(eps=c["eps"]), dropout=_Obj(p=c["dropout"]),
                 activation=act)
    params = model.params
    if not stack:
        layer.state_dict = lambda: {k[len("layers.0."):]: v for k, v in params.items()}
        return layer
    return _Obj(layers=[layer] * c["n_layers"], norm=_Obj(eps=c["eps"]) if c["final_norm"] else None,
                state_dict=lambda: dict(params))


class SaveTorch(unittest.TestCase):
    CASES = ["sweep_layernorm_%s_%s_res1_%s_%s" % c for c in
             [("post", "relu", "full", "nofinal"), ("pre", "gelu", "causal", "final"), ("pre", "gelu_tanh", "full", "nofinal")]]

    def test_stand_in_modules_round_trip(self):
        for case in self.CASES:
            m = blocklab.load(os.path.join(PARITY, case + ".model.safetensors"), dtype="float64")
            causal = m.config["causal"]
            with tempfile.TemporaryDirectory() as d:
                out = os.path.join(d, "saved.safetensors")
                blocklab.save_torch(stand_in_encoder(m), out, config={"causal": causal}, dtype="float64")
                back = blocklab.load(out)
                self.assertEqual(back.config, m.config, case)
                for name, value in m.params.items():
                    np.testing.assert_array_equal(back.params[name], value, err_msg=name)
                x = np.random.default_rng(1).standard_normal((2, 5, m.config["d_model"]))
                np.testing.assert_array_equal(back(x), m(x))

    def test_one_layer_is_a_one_layer_stack(self):
        m = blocklab.load(os.path.join(PARITY, "sweep_layernorm_post_relu_res1_full_nofinal.model.safetensors"))
        one = {k: v for k, v in m.params.items() if k.startswith("layers.0.")}
        layer = stand_in_encoder(m, stack=False)
        layer.state_dict = lambda: {k[len("layers.0."):]: v for k, v in one.items()}
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "one.safetensors")
            blocklab.save_torch(layer, out)
            self.assertEqual(blocklab.load(out).config["n_layers"], 1)

    def test_what_it_cannot_save_is_refused_by_name(self):
        m = blocklab.load(os.path.join(PARITY, "sweep_layernorm_post_relu_res1_full_nofinal.model.safetensors"))
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "x.safetensors")

            def refused(module, needle, **kw):
                with self.assertRaises(ValueError) as e:
                    blocklab.save_torch(module, out, **kw)
                self.assertIn(needle, str(e.exception))
                self.assertFalse(os.path.exists(out))
            refused(object(), "expected an attribute 'self_attn'")
            bad = stand_in_encoder(m)
            bad.layers = [_Obj(**{**bad.layers[0].__dict__, "activation": lambda x: x})]
            refused(bad, "layers[0].activation: expected relu, gelu or GELU(approximate='tanh'), got <lambda>")
            missing = stand_in_encoder(m)
            missing.state_dict = lambda: {k: v for k, v in m.params.items() if "linear2.bias" not in k}
            refused(missing, "expected a tensor 'layers.0.linear2.bias', got none")
            extra = stand_in_encoder(m)
            extra.state_dict = lambda: {**m.params, "layers.0.extra": np.zeros(3)}
            refused(extra, "state_dict has 'layers.0.extra'")
            wrong = stand_in_encoder(m)
            wrong.state_dict = lambda: {**m.params, "layers.0.linear1.bias": np.zeros(3)}
            refused(wrong, "set_param layers.0.linear1.bias: expected shape")
            refused(stand_in_encoder(m), "unknown key 'bogus'", config={"bogus": 1})
            refused(stand_in_encoder(m), "expected a dict", config=[1])
            refused(stand_in_encoder(m), "dtype: expected float32 or float64", dtype="int8")

    def test_real_pytorch_modules(self):
        try:
            import torch
            import torch.nn as nn
        except ImportError:
            self.skipTest("PyTorch is not installed here (Debian's python3-torch): the stand-in tests above cover save_torch")
        torch.manual_seed(0)
        for act, pre, final in [("relu", False, False), ("gelu", True, True), (nn.GELU(approximate="tanh"), True, False)]:
            layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=act, batch_first=True, norm_first=pre)
            enc = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16) if final else None, enable_nested_tensor=False)
            with tempfile.TemporaryDirectory() as d:
                out = os.path.join(d, "enc.safetensors")
                blocklab.save_torch(enc, out)
                m = blocklab.load(out, dtype="float64")
            x = torch.randn(2, 5, 16, requires_grad=True)  # grad on: PyTorch's slow path, which honours approximate='tanh'
            want = enc(x).detach().numpy()
            self.assertLess(np.abs(m(x.detach().numpy().astype(np.float64)) - want).max(), 1e-5, str(act))


if __name__ == "__main__":
    unittest.main()
