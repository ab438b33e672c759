#!/usr/bin/env python3
"""GPT-2's encoder as OpenAI's encoder.py defines it, for the tokenizer's tests (tests/text/).

Written here from the algorithm, not copied: pre-tokenize with the `regex` module (Debian's python3-regex) and
GPT-2's pattern, map each piece's UTF-8 bytes to the 256 byte characters, merge pairs by rank (every occurrence
of the lowest-ranked pair, left to right, until no pair has a rank), and look the symbols up in the vocabulary.
It differs from the JavaScript encoder of `gpt-3-encoder` where the two regex engines' `\\s` differ (U+0085,
U+FEFF) and where that encoder keys pairs by "a,b" (docs/gpt2.md, "Tokenizer").

    gpt2_reference.py ENCODER_JSON VOCAB_BPE CORPUS_JSON    prints {"ids": [[...], ...]} for corpus["strings"]
                                                            and corpus["js_differs"][i]["text"], in that order
"""
import json
import sys

import regex

PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def byte_characters():
    """The 256 bytes as printable characters: the visible Latin-1 ones stand for themselves, the others
    (controls, space, DEL, NBSP, soft hyphen) for 256, 257, ... in byte order."""
    visible = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    table, extra = {}, 0
    for b in range(256):
        if b in visible:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class Reference:
    def __init__(self, encoder_path, merges_path):
        with open(encoder_path, encoding="utf-8") as f:
            self.vocab = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().split("\n")[1:-1]  # the version line, and the empty string after the last newline
        self.rank = {tuple(line.split()): r for r, line in enumerate(lines)}
        self.chars = byte_characters()
        self.cache = {}

    def merge(self, word):
        if word in self.cache:
            return self.cache[word]
        symbols = list(word)
        while len(symbols) > 1:
            ranked = [(self.rank[p], p) for p in zip(symbols, symbols[1:]) if p in self.rank]
            if not ranked:
                break
            _, (left, right) = min(ranked)
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == left and symbols[i + 1] == right:
                    out.append(left + right)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            symbols = out
        self.cache[word] = symbols
        return symbols

    def encode(self, text):
        ids = []
        for piece in PATTERN.findall(text):
            word = "".join(self.chars[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[s] for s in self.merge(word))
        return ids


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    ref = Reference(sys.argv[1], sys.argv[2])
    with open(sys.argv[3], encoding="utf-8") as f:
        corpus = json.load(f)
    texts = list(corpus["strings"]) + [d["text"] for d in corpus.get("js_differs", [])]
    json.dump({"ids": [ref.encode(t) for t in texts]}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
