#!/usr/bin/env python3
"""Checks lessons/assistant_eval.json against the lesson files next to it (plain python3, no packages).

- the JSON parses and is {"questions": [...]}; every question has a unique id, a non-empty q and a known kind;
- counts: >= 70 questions, >= 30 conceptual, >= 15 numeric, >= 10 page-state, >= 10 out-of-scope;
- every cite is an existing section id `page#id` of lessons/<page>.md (out-of-scope questions cite nothing);
- numeric questions carry a non-empty list of finite numbers in `values`;
- page-state questions carry `page` and `context`; `context` keys are that page's URL state keys;
- the lesson files themselves: front matter (page = file name, a title), unique `{#id}`s, known `kind:`s,
  the required section ids, `widget:` pages and keys that exist, and `$$` lines standing alone.

Exit status 1 (and a list of problems) on any failure, 0 otherwise.
"""
import json
import math
import os
import re
import sys
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
PAGES = ["course", "other-half", "addnorm", "layernorm", "ffn", "gradflow", "train", "cheatsheet"]
KINDS_SECTION = {"intuition", "maths", "widget", "notice", "misunderstanding", "summary", "code", "exercise"}
KINDS_Q = {"conceptual", "numeric", "page-state", "out-of-scope"}
MIN_COUNTS = {"conceptual": 30, "numeric": 15, "page-state": 10, "out-of-scope": 10}
MIN_TOTAL = 70

# The pages' URL state keys, as web/src/lib/pages.ts declares them (train's a_/b_ keys come from runConfig).
_RUN = ["layers", "norm", "place", "res", "alpha", "act", "warm", "lr"]
STATE_KEYS = {
    "course": {"model", "text", "pos", "block", "placement", "step"},
    "cheatsheet": set(),
    "other-half": {"comp", "text", "pos", "block", "sub", "alpha"},
    "ffn": {"text", "pos", "layer", "act", "dff", "wseed"},
    "layernorm": {"tab", "norm", "x", "row", "gamma", "beta", "eps", "shift"},
    "gradflow": {"layers", "residual", "compare", "norm", "placement", "metric", "seed"},
    "addnorm": {"placement", "norm", "residual", "step", "text", "pos", "block", "depth"},
    "train": {"preset", "steps", "dmodel", "seed", "run_a", "run_b"} | {f"{s}_{k}" for s in "ab" for k in _RUN},
}

# The section ids each page must keep (the pages and the assistant refer to them).
REQUIRED = {
    "course": ["one-block", "equations", "reading", "path"],
    "cheatsheet": ["keep", "residual", "layernorm", "pre-norm", "ffn", "memoization"],
    "other-half": ["sandwich", "residual", "layernorm", "ffn", "misunderstandings", "take-aways"],
    "addnorm": ["placement", "post-norm", "pre-norm", "warmup", "which-when", "data-path"],
    "layernorm": ["why", "step-by-step", "gamma-beta", "epsilon", "rmsnorm", "batchnorm", "regularisation"],
    "ffn": ["position-wise", "expand-contract", "activation", "memory", "refining"],
    "gradflow": ["depth", "vanishing", "highway", "norms", "drift", "dp-analogy"],
    "train": ["copy-task", "presets", "no-residual", "no-norm", "warmup", "reading-curves"],
}

problems = []


def problem(msg):
    problems.append(msg)


def parse_lesson(page):
    """Returns the set of section ids of lessons/<page>.md, recording format problems on the way."""
    path = os.path.join(HERE, page + ".md")
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().split("\n")
    except OSError as e:
        problem(f"{page}.md: cannot read ({e})")
        return set()
    if not lines or lines[0] != "---" or "---" not in lines[1:]:
        problem(f"{page}.md: no front matter")
        return set()
    end = lines.index("---", 1)
    front = dict(l.split(": ", 1) for l in lines[1:end] if ": " in l)
    if front.get("page") != page:
        problem(f"{page}.md: front matter page is {front.get('page')!r}")
    if not front.get("title"):
        problem(f"{page}.md: no title")
    ids = []
    i = end + 1
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            m = re.fullmatch(r"## (.+) \{#([a-z0-9-]+)\}", line)
            if not m:
                problem(f"{page}.md:{i + 1}: heading without a valid {{#id}}: {line}")
                i += 1
                continue
            sid = m.group(2)
            ids.append(sid)
            j = i + 1
            while j < len(lines) and lines[j].strip():
                key, sep, val = lines[j].partition(": ")
                if not sep or key not in ("widget", "keywords", "kind"):
                    problem(f"{page}.md:{j + 1}: unexpected metadata line in #{sid}: {lines[j]}")
                elif key == "kind" and val not in KINDS_SECTION:
                    problem(f"{page}.md:{j + 1}: unknown kind {val!r}")
                elif key == "widget":
                    target, _, query = val.partition("?")
                    if target not in STATE_KEYS:
                        problem(f"{page}.md:{j + 1}: widget page {target!r} does not exist")
                    else:
                        for pair in filter(None, query.split("&")):
                            k = pair.partition("=")[0]
                            if k not in STATE_KEYS[target]:
                                problem(f"{page}.md:{j + 1}: widget key {k!r} is not a state key of {target}")
                j += 1
            body = []
            while j < len(lines) and not lines[j].startswith("## "):
                body.append(lines[j])
                j += 1
            if not "".join(body).strip():
                problem(f"{page}.md: #{sid} has no body")
            for n, b in enumerate(body):
                if "$$" in b and b.strip() != "$$":
                    problem(f"{page}.md: #{sid}: '$$' must stand on its own line: {b}")
            if sum(b.strip() == "$$" for b in body) % 2:
                problem(f"{page}.md: #{sid}: unbalanced $$")
            i = j
        else:
            i += 1
    dup = [k for k, c in Counter(ids).items() if c > 1]
    if dup:
        problem(f"{page}.md: duplicate ids {dup}")
    for sid in REQUIRED[page]:
        if sid not in ids:
            problem(f"{page}.md: required section #{sid} missing")
    return set(ids)


def main():
    sections = set()
    for page in PAGES:
        sections |= {f"{page}#{sid}" for sid in parse_lesson(page)}

    path = os.path.join(HERE, "assistant_eval.json")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as e:
        problem(f"assistant_eval.json: {e}")
        data = None
    qs = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(qs, list):
        problem('assistant_eval.json: expected {"questions": [...]}')
        qs = []

    seen = set()
    kinds = Counter()
    cited = set()
    for n, q in enumerate(qs):
        where = f"question {n} ({q.get('id') if isinstance(q, dict) else '?'})"
        if not isinstance(q, dict):
            problem(f"{where}: not an object")
            continue
        qid = q.get("id")
        if not isinstance(qid, str) or not qid:
            problem(f"{where}: no id")
        elif qid in seen:
            problem(f"{where}: duplicate id")
        seen.add(qid)
        if not isinstance(q.get("q"), str) or not q["q"].strip():
            problem(f"{where}: no question text")
        kind = q.get("kind")
        if kind not in KINDS_Q:
            problem(f"{where}: unknown kind {kind!r}")
            continue
        kinds[kind] += 1
        page = q.get("page")
        if page is not None and page not in STATE_KEYS:
            problem(f"{where}: unknown page {page!r}")
        cite = q.get("cite")
        if kind == "out-of-scope":
            if cite:
                problem(f"{where}: an out-of-scope question cites nothing")
        else:
            if not isinstance(cite, list) or not cite:
                problem(f"{where}: no cite list")
            else:
                for c in cite:
                    if c not in sections:
                        problem(f"{where}: cite {c!r} is not a section of the lessons")
                    cited.add(c)
        if kind == "numeric":
            vals = q.get("values")
            if not isinstance(vals, list) or not vals:
                problem(f"{where}: numeric without values")
            else:
                for v in vals:
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                        problem(f"{where}: value {v!r} is not a finite number")
        if kind == "page-state" or "context" in q:
            ctx = q.get("context")
            if page is None:
                problem(f"{where}: a context needs a page")
            elif not isinstance(ctx, dict) or not ctx:
                problem(f"{where}: page-state without a context object")
            else:
                for k in ctx:
                    if k not in STATE_KEYS[page]:
                        problem(f"{where}: context key {k!r} is not a state key of {page}")

    if len(qs) < MIN_TOTAL:
        problem(f"{len(qs)} questions, want >= {MIN_TOTAL}")
    for k, m in MIN_COUNTS.items():
        if kinds[k] < m:
            problem(f"{kinds[k]} {k} questions, want >= {m}")
    uncited = sorted(sections - cited)

    for p in problems:
        print("problem:", p)
    print(f"{len(qs)} questions: " + ", ".join(f"{k} {kinds[k]}" for k in sorted(KINDS_Q))
          + f"; {len(sections)} sections, {len(sections) - len(uncited)} cited")
    if uncited:
        print("sections no question cites:", ", ".join(uncited))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
