#!/usr/bin/env python3
"""Fails when the modules of src/ import each other in a cycle (make lint).

A module is a file of src/ (mod.rs/lib.rs stand for their folder). An edge A -> B is any
`crate::`/`super::`/`self::` path in A that names B, in `use` statements or inline, outside
`#[cfg(test)]` modules (pass --tests to include them). A parent and its own child do not count
(a mod.rs declaring a child that uses `super::` items is how Rust modules work).

  hack/import-cycles.py            exit 1 and print every cycle, if any
  hack/import-cycles.py --graph    print every edge
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(path):
    parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def expand(text):
    """`a::{b, c::{d}}` -> [`a::b`, `a::c::d`]."""
    text = text.strip()
    start = text.find("{")
    if start < 0:
        return [text]
    depth, end = 0, None
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                end = i
                break
    parts, depth, cur = [], 0, ""
    for ch in text[start + 1:end]:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [text[:start] + e for p in parts if p.strip() for e in expand(p)]


def main():
    files = [os.path.join(d, f) for d, _, fs in os.walk(ROOT) for f in fs if f.endswith(".rs")]
    known = {module_of(f) for f in files}
    edges = {}
    for f in sorted(files):
        me = module_of(f)
        src = open(f, encoding="utf-8").read()
        if "--tests" not in sys.argv:
            src = re.split(r"#\[cfg\(test\)\]\s*mod\s+\w+", src)[0]
        src = re.sub(r"//[^\n]*", "", src)
        paths = []
        for m in re.finditer(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", src, re.M):
            paths += expand(m.group(1))
        paths += re.findall(r"\b((?:crate|super)(?:::[A-Za-z_]\w*)+)", src)
        for p in paths:
            segs = [s.strip().split(" as ")[0] for s in p.split("::")]
            if segs[0] == "crate":
                base, segs = [], segs[1:]
            elif segs[0] in ("super", "self"):
                base = list(me)
                while segs and segs[0] == "super":
                    base, segs = base[:-1], segs[1:]
                if segs and segs[0] == "self":
                    segs = segs[1:]
            else:
                continue
            full = base + segs
            target = next((tuple(full[:i]) for i in range(len(full), -1, -1) if tuple(full[:i]) in known), None)
            if target is None or target == me or me[: len(target)] == target or target[: len(me)] == me:
                continue
            edges.setdefault(me, set()).add(target)
    name = lambda m: "::".join(m) or "crate"
    if "--graph" in sys.argv:
        for m in sorted(edges):
            print(name(m), "->", ", ".join(sorted(name(t) for t in edges[m])))
        return 0
    # Tarjan's strongly connected components.
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(name(c) for c in comp))

    for v in sorted(known):
        if v not in index:
            visit(v)
    for c in cycles:
        print("import cycle: " + " <-> ".join(c), file=sys.stderr)
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
