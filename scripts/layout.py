#!/usr/bin/env python3
"""The layout's rules, checked (issue 13): no Rust file over 800 lines (tests included), no
cycle between the modules of a crate, and `peerwarden/` at most 40% of the production Rust.

Usage: python3 scripts/layout.py   (exit 1 with the offenders listed)

A cycle is found among sibling modules: every `use`/path reaching `crate::`, `super::` or
`self::` from a module is an edge between the two siblings under their common parent.
Inline `#[cfg(test)] mod tests` blocks are left out of the edges (tests may reach anywhere).
"""
import os
import re
import sys

MAX_LINES = 800
MAX_SHARE = 0.40
# Production crates (their src/); the kernel programs count, the test crate and fuzz do not.
PRODUCTION = [
    "common", "ebpf", "classifier", "policies", "history", "ipfix", "supervise", "tls", "lab", "alto", "swarms", "peerwarden",
]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {"target", ".git", "node_modules"}


def rust_files(top):
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for f in files:
            if f.endswith(".rs"):
                yield os.path.join(root, f)


def is_test_file(path):
    name = os.path.basename(path)
    return name == "tests.rs" or name.endswith("_tests.rs") or "/tests/" in path


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']"""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(i, prefix):
        cur = ""
        while i < len(tree):
            ch = tree[i]
            if ch == "{":
                i = walk(i + 1, prefix + cur)
                cur = ""
                continue
            if ch in ",}":
                if cur:
                    out.append(prefix + cur)
                cur = ""
                i += 1
                if ch == "}":
                    return i
                continue
            cur += ch
            i += 1
        if cur:
            out.append(prefix + cur)
        return i

    walk(0, "")
    return out


def paths_in(text):
    found = []
    for tree in re.findall(r"\buse\s+([^;]+);", text):
        found += expand_use(tree)
    found += re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", text)
    return found


def modules(src):
    mods = {}
    for path in rust_files(src):
        rel = os.path.relpath(path, src)[:-3].split(os.sep)
        if rel[-1] == "mod":
            rel = rel[:-1]
        if rel in (["lib"], ["main"]) or rel[0] == "bin":
            rel = []
        mods[tuple(rel)] = path
    return mods


def resolve(mods, parts):
    for k in range(len(parts), 0, -1):
        if tuple(parts[:k]) in mods:
            return tuple(parts[:k])
    return None


def sibling_edges(src):
    mods = modules(src)
    edges = set()
    for mid, path in mods.items():
        if is_test_file(path):
            continue
        text = open(path, encoding="utf-8").read()
        text = re.split(r"#\[cfg\(test\)\]\s*\n\s*(?:pub\(crate\) )?mod tests", text)[0]
        # Comments (doc links included) name modules without depending on them.
        text = re.sub(r"//[^\n]*", "", text)
        is_dir = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
        here = list(mid) if is_dir else list(mid[:-1])
        for p in paths_in(text):
            parts = p.split("::")
            if parts[0] == "crate":
                target = resolve(mods, parts[1:])
            elif parts[0] == "self":
                target = resolve(mods, list(mid) + parts[1:] if is_dir else here + parts[1:])
            elif parts[0] == "super":
                n = 0
                while parts and parts[0] == "super":
                    parts = parts[1:]
                    n += 1
                base = list(mid[:-1])
                base = base[: len(base) - (n - 1)] if n > 1 else base
                target = resolve(mods, base + parts)
            else:
                target = None
            if target is not None and target != mid:
                edges.add((mid, target))
    siblings = set()
    for u, v in edges:
        k = 0
        while k < min(len(u), len(v)) and u[k] == v[k]:
            k += 1
        if len(u) > k and len(v) > k:
            siblings.add((u[: k + 1], v[: k + 1]))
    return siblings


def cycles(edges):
    graph = {}
    for u, v in edges:
        graph.setdefault(u, set()).add(v)
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted("::".join(m) for m in comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main():
    os.chdir(ROOT)
    problems = []
    crates = [d for d in sorted(os.listdir(".")) if os.path.isfile(os.path.join(d, "Cargo.toml"))]
    for crate in crates + ["fuzz"]:
        for path in rust_files(crate):
            n = sum(1 for _ in open(path, encoding="utf-8"))
            if n > MAX_LINES:
                problems.append(f"{path}: {n} lines (at most {MAX_LINES})")
    for crate in crates:
        src = os.path.join(crate, "src")
        if os.path.isdir(src):
            for comp in cycles(sibling_edges(src)):
                problems.append(f"{crate}: module cycle {' <-> '.join(comp)}")
    lines = {}
    for crate in PRODUCTION:
        src = os.path.join(crate, "src")
        if os.path.isdir(src):
            lines[crate] = sum(
                sum(1 for _ in open(p, encoding="utf-8"))
                for p in rust_files(src)
                if not is_test_file(p)
            )
    total = sum(lines.values())
    share = lines.get("peerwarden", 0) / total if total else 0.0
    print("production Rust lines: " + ", ".join(f"{c} {n}" for c, n in lines.items()) + f"; total {total}")
    print(f"peerwarden/ share: {share:.1%} (at most {MAX_SHARE:.0%})")
    if share > MAX_SHARE:
        problems.append(f"peerwarden/ holds {share:.1%} of the production Rust (at most {MAX_SHARE:.0%})")
    for p in problems:
        print("layout: " + p)
    print("layout: ok" if not problems else f"layout: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
