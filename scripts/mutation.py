"""Mutation testing of the modules where a wrong line is a security hole or a wrong number.

    .venv/bin/python scripts/mutation.py                  # every module below, one after the other
    .venv/bin/python scripts/mutation.py gates keys       # some of them
    .venv/bin/python scripts/mutation.py --jobs 2         # two modules at a time (one copy each)
    .venv/bin/python scripts/mutation.py --ref HEAD       # a clean clone of a commit, not the work tree
    .venv/bin/python scripts/mutation.py --ref HEAD --overlay tests/fleet/test_signing.py   # + new files

The tool is cosmic-ray (``pip install cosmic-ray``): it rewrites one operator, constant or
statement of the file on disk at a time and runs a test command, so it works with this repository's
layout (``edgekit.converters`` is the folder ``converters/``), with tests that start subprocesses
(the health check runs as ``python -m edgekit.agent.healthcheck``) and with any pytest selection.

Nothing is mutated here: each module runs in its own copy under a temporary folder (the files git
knows of in the work tree, or ``--ref``'s clone). The copy gets ``edgekit/<sub>`` symlinks for the
folders ``pyproject.toml`` maps into the namespace and is put first on PYTHONPATH, so the tests
import the copy and not the editable install; the script checks that before it starts.

Per module it prints mutants, killed, survived, timeout (counted as killed), equivalent (survivors
listed in EQUIVALENT below with the reason, also in docs/mutation.md), the score
``(killed + timeout) / (mutants - equivalent)`` and the run time. Survivors' diffs go to
``<out>/<module>.survivors.txt`` and the raw results to ``<out>/<module>.json`` (``--out``, default
``build/mutation``; ``--from-results`` prints the table again from those). Exit status 1 when a
module scores under ``--min-score`` (default 90).

Mutants inside type annotations are not run: with ``from __future__ import annotations`` no code
evaluates them. For the quantizer only the parameter and bias functions are mutated.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Module:
    path: str
    tests: tuple[str, ...]
    # only mutate these functions (and methods) of the file; empty: the whole file
    functions: tuple[str, ...] = ()
    pytest_args: tuple[str, ...] = ()
    # a second pytest run (files and options) after the first passes: slow-to-import tests go here,
    # so a mutant the first run kills costs one quick pytest start
    then: tuple[str, ...] = ()


MODULES = {
    "gates": Module("edgekit/fleet/gates.py", ("tests/fleet/test_gates.py",)),
    # the unit tests first, the brokers (20 s) after: -x stops most mutants within a second
    "access": Module("edgekit/fleet/access.py", ("tests/fleet/test_access.py", "tests/fleet/test_broker_access.py")),
    "healthcheck": Module("edgekit/agent/healthcheck.py", ("tests/fleet/test_healthcheck.py",)),
    "signing": Module("edgekit/signing.py", ("tests/fleet/test_signing.py",)),
    "keys": Module("edgekit/keys.py", ("tests/fleet/test_key_files.py", "tests/fleet/test_keys.py")),
    # the quantizer's parameter and bias code: scales and zero points, weights, biases, bias correction
    "quant": Module(
        "converters/quant/quantizer.py",
        ("tests/converters/test_quant_params.py",),
        functions=(
            "symmetric16_params",
            "activation_params",
            "symmetric_weights",
            "quantize_values",
            "_bias_correction",
            "_quantize_weighted",
        ),
        then=(
            "tests/converters/test_int8.py",
            "-k",
            "minmax or integer_io or self_check or weights_outside or bias_correction or cross_layer or int16x8 or qdq",
        ),
    ),
}

# Survivors that no test can kill: (module, line removed, line added) -> why the program is the same,
# or (why, the line just before) where the same line occurs twice in the module. Lines are compared
# stripped of indentation; docs/mutation.md lists the same.
_REPLAY = 'if seq < last or (seq == last and channel != "deploy"):'
_SAVE = "if seq != last:"
_WIDEN = "if scale > (hi - lo) / 255.0:"
_RESCALE = "scale = max((hi - lo) / 255.0, min_scale)"
_SPREAD = "lo, hi = min(centre - 127.5 * scale, 0.0), max(centre + 127.5 * scale, 0.0)"
_FLOOR = "amax = np.where(amax > 0, np.maximum(amax, amax.max() * MIN_CHANNEL_RANGE_RATIO), 0.0)"
_SCALE = "scale = np.where(amax > 0, amax / 127.0, 1.0)"
_CLIP_T = "q = np.clip(np.round(w / scale[0]), -127, 127)"
_CLIP_C = "q = np.clip(np.round(w / scale.reshape(shape)), -127, 127)"
_CHECKED = "same float32 scale and zero point on 300,000 random ranges (lo <= hi) and least scales"
_SMALLER_HI = "hi then only gets smaller, and hi feeds only the max() after it, which stays at min_scale"
_QV = "return np.clip(np.round(value / q.scale[0]) + q.zero_point[0], info.min, info.max).astype(dtype)"
_TIMED = "times.append(1000 * (time.perf_counter() - start))"
_NOISE = "a 0.1% change of a measured latency is below its run-to-run spread: no test can tell it apart"
_BUDGET = "if args.budget_ms and p50 > args.budget_ms:"
_RUNS = 'parser.add_argument("--runs", type=int, default=10)'
_UNSEEN_RUNS = "the count of timed runs is not reported; 9, 10 or 11 runs change the median by its noise only"
_NO_SAVE = "the check above has raised unless seq >= last, so the sequence saved is the same"
EQUIVALENT: dict[tuple[str, str, str], str | tuple[str, str]] = {
    ("signing", _REPLAY, _REPLAY.replace("seq == last", "seq <= last")): "seq < last has raised already",
    ("signing", _SAVE, "if seq > last:"): _NO_SAVE,
    ("signing", _SAVE, "if seq >= last:"): _NO_SAVE + " (a repeated deploy writes the file again, same content)",
    ("signing", _SAVE, "if seq is not last:"): _NO_SAVE + " (equal big ints may be distinct objects: same content)",
    (
        "signing",
        "if not isinstance(expires, int | float) or expires < time.time():",
        "if not isinstance(expires, int | float) or expires <= time.time():",
    ): "differs only when expires equals the clock reading to the nanosecond",
    ("keys", "mask = os.umask(0)", "mask = os.umask( 1)"): "the mask set here is replaced at once by the old one",
    ("keys", "mask = os.umask(0)", "mask = os.umask( -1)"): "the mask set here is replaced at once by the old one",
    (
        "access",
        'if i >= len(t) or (part != "+" and part != t[i]):',
        'if i >= len(t) or (part is not "+" and part != t[i]):',
    ): "CPython keeps one object per one-character string: a '+' from str.split is the literal '+'",
    (
        "access",
        'if i >= len(t) or (part != "+" and part != t[i]):',
        'if i == len(t) or (part != "+" and part != t[i]):',
    ): "i counts up by one from 0 and the loop returns when it reaches len(t): it is never above it",
    (
        "access",
        'elif len(parts) == 4 and parts[1] == "6":',
        'elif len(parts) == 4 and parts[1] is "6":',
    ): "CPython keeps one object per one-character string: a '6' from str.split is the literal '6'",
    ("access", "if stamp != self._stamp:", "if stamp is not self._stamp:"): "a new tuple is never the stored"
    " one, so the files are read on every call instead of on a change: the same users and rules, only slower",
    ("access", 'if part == "#":', 'if part is "#":'): "CPython keeps one object per one-character string",
    ("access", "return len(p) == len(t)", "return len(p) >= len(t)"): "the loop has returned False already"
    " whenever len(p) > len(t)",
    (
        "access",
        'access, pattern = (words[1], words[2]) if len(words) == 3 else ("readwrite", words[1])',
        'access, pattern = (words[1], words[2]) if len(words) >= 3 else ("readwrite", words[1])',
    ): "the branch is taken only for len(words) in (2, 3)",
    (
        "access",
        'if len(parts) == 5 and parts[1] == "7":',
        'if len(parts) == 5 and parts[1] is "7":',
    ): "CPython keeps one object per one-character string: a '7' from str.split is the literal '7'",
    (
        "quant",
        "def symmetric16_params(lo: float, hi: float, min_scale: float = 0.0) -> QuantParams:",
        "def symmetric16_params(lo: float, hi: float, min_scale: float = -1.0) -> QuantParams:",
    ): "the scale is at least 1e-30 / 32767 > 0, so max(scale, -1.0) == max(scale, 0.0)",
    **{
        ("quant", line, line.replace("-1", alt)): "numpy's reshape takes any negative size as the one to infer"
        for line in ("shape[axis] = -1", "m = mean.reshape(groups, -1)")
        for alt in ("~1", "- 2")
    },
    ("quant", _CLIP_T, _CLIP_T.replace("scale[0]", "scale[ -1]")): "a per-tensor scale has one entry",
    **{
        ("quant", _WIDEN, _WIDEN.replace("(hi - lo) / 255.0", alt)): "the condition only holds more often, and"
        " running the widening when the scale already equals (hi - lo) / 255 changes nothing: " + _CHECKED
        for alt in ("(hi + lo) / 255.0", "(hi * lo) / 255.0", "(hi - lo) // 255.0")
    },
    ("quant", _WIDEN, _WIDEN.replace(">", "is not")): "as above: the widening then always runs, with the same result",
    **{
        ("quant", _RESCALE, _RESCALE.replace("(hi - lo)", alt)): (
            "after the widening hi - lo = 255 * min_scale up to rounding, so the max is min_scale whenever its"
            " first argument does not grow (hi > 0 >= lo here): " + _CHECKED,
            _SPREAD,  # the recomputation after the widening, not the first computation
        )
        for alt in ("(hi + lo)", "(hi * lo)", "(hi // lo)", "(hi % lo)", "(hi / lo)")
    },
    **{
        ("quant", _SPREAD, _SPREAD.replace(old, new)): why + ": " + _CHECKED
        for old, new, why in (
            ("0.0), max", "1.0), max", "centre - 127.5 * scale < lo <= 0 already"),
            ("centre + 127.5 * scale", "centre + 127.5 % scale", _SMALLER_HI),
            ("centre + 127.5 * scale", "centre - 127.5 * scale", _SMALLER_HI),
        )
    },
    ("quant", _FLOOR, _FLOOR.replace("0.0)", "-1.0)")): "the next line maps every amax <= 0 to a scale of 1.0",
    ("quant", _SCALE, _SCALE.replace("amax > 0", "amax != 0")): "amax is an absolute maximum, never negative",
    ("quant", _FLOOR, _FLOOR.replace("amax > 0", "amax != 0")): "amax is an absolute maximum, never negative",
    (
        "quant",
        "moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)",
        "moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], ~1)",
    ): "numpy's reshape takes any negative size as the one to infer",
    **{
        (
            "quant",
            "zero_point = int(np.clip(round(-128 - lo / scale), -128, 127))",
            f"zero_point = int(np.clip(round(-128 - lo / scale), {alt}, 127))",
        ): "lo <= 0, so -128 - lo / scale >= -128: the lower clip never acts"
        for alt in ("- 129", "~128")
    },
    **{
        (
            "quant",
            'if mean is not None and n.op != "TRANSPOSE_CONV":',
            f'if mean is not None and n.op {alt} "TRANSPOSE_CONV":',
        ): "TRANSPOSE_CONV sorts after the other weighted ops, and for it _bias_correction returns zeros"
        for alt in ("<", "<=")
    },
    ("quant", "if hi - lo < 1e-30:", "if hi - lo <= 1e-30:"): "at hi - lo == 1e-30 the branch sets hi = lo + 1e-30,"
    " the hi it had",
    (
        "quant",
        'x = n.inputs[2] if n.op == "TRANSPOSE_CONV" else n.inputs[0]',
        'x = n.inputs[2] if n.op >= "TRANSPOSE_CONV" else n.inputs[0]',
    ): "TRANSPOSE_CONV sorts after every other weighted op (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED)",
    ("quant", 'if op == "CONV_2D":', 'if op <= "CONV_2D":'): "only weighted ops reach _bias_correction;"
    " FULLY_CONNECTED and DEPTHWISE_CONV_2D returned above and TRANSPOSE_CONV sorts after CONV_2D",
    (
        "quant",
        "multiplier = error.shape[3] // mean.size",
        "multiplier = error.shape[3] / mean.size",
    ): "the division is exact (channels = inputs x multiplier) and np.repeat takes the float 2.0 as 2",
    (
        "quant",
        "if len(n.inputs) > b_index and n.inputs[b_index]:",
        "if len(n.inputs) is not b_index and n.inputs[b_index]:",
    ): "a weighted op has b_index or b_index + 1 inputs, and small ints are one object each: same as >",
    (
        "quant",
        'if mean is not None and n.op != "TRANSPOSE_CONV":',
        'if mean is not None and n.op is not "TRANSPOSE_CONV":',
    ): "for TRANSPOSE_CONV, _bias_correction returns zeros: entering the branch subtracts nothing",
    **{
        ("quant", c, c.replace("-127, 127", alt)): "|w / scale| <= 127 by construction (scale = max |w| / 127)"
        for c in (_CLIP_T, _CLIP_C)
        for alt in ("~127, 127", "-127, 128", "-128, 127", "- 128, 127")
    },
    ("quant", _QV, _QV.replace("q.zero_point[0]", "q.zero_point[ -1]")): "activation parameters have one zero point",
    ("healthcheck", _TIMED, _TIMED.replace("- start", "% start")): "perf_counter() % start is perf_counter() - start"
    " while perf_counter() < 2 * start, i.e. on any machine up for longer than the check has run",
    ("healthcheck", _TIMED, _TIMED.replace("1000 *", " 1001 *")): _NOISE,
    ("healthcheck", _TIMED, _TIMED.replace("1000 *", " 999 *")): _NOISE,
    ("healthcheck", 'if __name__ == "__main__":', 'if __name__ <= "__main__":'): "true as `__main__`; false for the"
    " import name `edgekit.agent.healthcheck`, which sorts after `__main__` (the >= mutant is killed)",
    (
        "healthcheck",
        _BUDGET,
        _BUDGET.replace(">", ">="),
    ): "differs only when the measured p50 equals the budget exactly",
    ("healthcheck", _RUNS, _RUNS.replace("default=10", "default= 11")): _UNSEEN_RUNS,
    ("healthcheck", _RUNS, _RUNS.replace("default=10", "default= 9")): _UNSEEN_RUNS,
    ("healthcheck", "session = load(args.model, threads=1)", "session = load(args.model, threads= 2)"): "the"
    " thread count changes no output value and no verdict; only the latency, which a budget test cannot pin",
    (
        "keys",
        "Path(tmp).unlink(missing_ok=True)",
        "Path(tmp).unlink(missing_ok=False)",
    ): "the temp file exists whenever the handler runs: only os.replace removes it, and nothing after it raises",
}


@dataclass
class Outcome:
    name: str
    mutants: int = 0
    killed: int = 0
    timeout: int = 0
    seconds: float = 0.0
    raw: list[dict] = field(default_factory=list)  # surviving mutants: {"where": ..., "diff": ...}
    error: str = ""
    population: int = 0  # mutants of the module before --sample
    survived: int = 0
    equivalent: int = 0
    survivors: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        live = self.mutants - self.equivalent
        return 100.0 * (self.killed + self.timeout) / live if live else 100.0

    def classify(self) -> None:
        """Survivors listed in EQUIVALENT are equivalent; the others survived."""
        self.survived = self.equivalent = 0
        self.survivors = []
        for mutant in self.raw:
            removed, added, before = changed_lines(mutant["diff"])
            reason = EQUIVALENT.get((self.name, removed, added))
            if isinstance(reason, tuple):  # (reason, the line that must come just before)
                reason = reason[0] if reason[1] == before else None
            if reason:
                self.equivalent += 1
            else:
                self.survived += 1
            tag = "equivalent: " + reason if reason else "SURVIVED"
            self.survivors.append(f"== {tag}: {mutant['where']}\n{mutant['diff']}")

    def save(self, folder: Path) -> None:
        keep = ("name", "mutants", "killed", "timeout", "seconds", "raw", "error", "population")
        (folder / f"{self.name}.json").write_text(json.dumps({k: getattr(self, k) for k in keep}, indent=1))
        (folder / f"{self.name}.survivors.txt").write_text("\n".join(self.survivors))

    @classmethod
    def load(cls, folder: Path, name: str) -> Outcome:
        return cls(**json.loads((folder / f"{name}.json").read_text()))


def copy_tree(dest: Path, ref: str | None, overlay: list[str]) -> None:
    if ref:
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(dest)], check=True)
        subprocess.run(["git", "-C", str(dest), "checkout", "-q", ref], check=True)
        for rel in overlay:  # work-tree files over the commit (new tests not committed yet)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    else:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True,
            capture_output=True,
        ).stdout.decode()
        for rel in filter(None, listed.split("\0")):
            src = ROOT / rel
            if src.is_file() and not src.is_symlink():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
    mapping = tomllib.loads((dest / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in mapping.items():
        link = dest / package.replace(".", "/")
        if not link.exists():
            link.symlink_to(os.path.relpath(dest / folder, link.parent))


def check_imports(copy: Path, module: Module, env: dict) -> None:
    name = "edgekit." + module.path[: -len(".py")].replace("/", ".").removeprefix("edgekit.")
    probe = f"import {name} as m; print(m.__file__)"
    where = subprocess.run([sys.executable, "-c", probe], cwd=copy, env=env, capture_output=True, text=True)
    found = Path(where.stdout.strip() or "/nonexistent").resolve()
    if found != (copy / module.path).resolve():
        raise RuntimeError(f"{name} imports from {found} ({where.stderr.strip()[-300:]}), not from the copy {copy}")


def function_lines(source: str, names: tuple[str, ...]) -> list[tuple[int, int]]:
    spans = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in names:
            spans.append((node.lineno, node.end_lineno))
    missing = set(names) - {n.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)}
    if missing:
        raise RuntimeError(f"functions not found: {sorted(missing)}")
    return spans


def annotation_lines(source: str) -> set[int]:
    """Lines of type annotations: with ``from __future__ import annotations`` they are strings no
    code evaluates, so a mutant there (``dict | None`` -> ``dict + None``) is not a program change."""
    tree = ast.parse(source)
    lazy = any(
        isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )
    if not lazy:
        return set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            found.append(node.returns)
    return {line for a in found for line in range(a.lineno, a.end_lineno + 1)}


def _in_annotation(source: str, spec) -> bool:
    """Whether the mutated node lies within an annotation node (by position, not just by line)."""
    tree = ast.parse(source)
    start, end = tuple(spec.start_pos), tuple(spec.end_pos)
    for node in ast.walk(tree):
        ann = None
        if isinstance(node, ast.arg | ast.AnnAssign):
            ann = node.annotation
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            ann = node.returns
        if ann is not None and (ann.lineno, ann.col_offset) <= start and end <= (ann.end_lineno, ann.end_col_offset):
            return True
    return False


def changed_lines(diff: str) -> tuple[str, str, str]:
    """(line removed, line added, the line before them), each stripped of indentation."""
    body = [line for line in diff.splitlines() if not line.startswith(("---", "+++", "@@"))]
    removed = " ".join(line[1:].strip() for line in body if line.startswith("-"))
    added = " ".join(line[1:].strip() for line in body if line.startswith("+"))
    first = next((i for i, line in enumerate(body) if line.startswith("-")), 0)
    before = body[first - 1][1:].strip() if first > 0 and body[first - 1].startswith(" ") else ""
    return removed, added, before


def run_module(name: str, module: Module, args) -> Outcome:
    """Mutate and test; with ``args.survivors`` only the mutants that survived the saved run
    (the others keep their saved result: a test added since cannot revive a killed mutant)."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    out = Outcome(name)
    again = None
    if args.survivors:
        saved = Outcome.load(args.out, name)
        again = [m["mutant"] for m in saved.raw]
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutation-{name}-") as tmp:
        copy = Path(tmp) / "repo"
        copy.mkdir()
        copy_tree(copy, args.ref, args.overlay)
        env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONNOUSERSITE": "1"}
        env.pop("CI", None)
        check_imports(copy, module, env)
        pytest = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", f"--rootdir={copy}"]
        command = [*pytest, *module.tests, *module.pytest_args]
        if module.then:
            command = ["sh", "-c", f"{shlex.join(command)} && {shlex.join([*pytest, *module.then])}"]
        # baseline: the tests pass on the unmutated copy (and leave .pyc files for the runs after)
        t0 = time.monotonic()
        base = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=600)
        baseline_s = time.monotonic() - t0
        if base.returncode != 0:
            out.error = f"baseline fails:\n{base.stdout[-2000:]}{base.stderr[-2000:]}"
            return out
        timeout = max(args.timeout, 4 * baseline_s + 10)
        config = copy / "mutation.toml"
        config.write_text(
            "[cosmic-ray]\n"
            f"module-path = {json.dumps(module.path)}\n"
            f"timeout = {timeout:.1f}\n"
            "excluded-modules = []\n"
            f"test-command = {json.dumps(shlex.join(command))}\n"
            "[cosmic-ray.distributor]\n"
            'name = "local"\n'
        )
        session = copy / "mutation.sqlite"
        cr = [sys.executable, "-m", "cosmic_ray.cli"]
        subprocess.run([*cr, "init", str(config), str(session)], cwd=copy, env=env, check=True, capture_output=True)
        source = (copy / module.path).read_text()
        spans = function_lines(source, module.functions) if module.functions else [(1, len(source.splitlines()))]
        annotations = annotation_lines(source)
        with use_db(str(session), WorkDB.Mode.open) as db:
            skip, kept = [], []
            for item in db.pending_work_items:
                (m,) = item.mutations
                line, end = m.start_pos[0], m.end_pos[0]
                outside = not any(a <= line <= b for a, b in spans)
                # an annotation mutant: the whole mutated node is an annotation (not a default value)
                annotation = all(x in annotations for x in range(line, end + 1)) and _in_annotation(source, m)
                done = again is not None and [m.operator_name, m.occurrence] not in again
                if outside or annotation or done:
                    skip.append(item.job_id)
                else:
                    kept.append(item.job_id)
            out.population = len(kept)
            if args.sample and len(kept) > args.sample:  # a random sample, the same for the same seed
                chosen = set(random.Random(args.seed).sample(sorted(kept), args.sample))
                skip += [job for job in kept if job not in chosen]
            db.set_multiple_results(skip, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="not mutated"))
        # cosmic-ray's own console script would run under whatever python; this one is ours
        env_exec = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
        subprocess.run([*cr, "exec", str(config), str(session)], cwd=copy, env=env_exec, check=True)
        with use_db(str(session), WorkDB.Mode.open) as db:
            for item, result in db.completed_work_items:
                if result.worker_outcome == WorkerOutcome.SKIPPED:
                    continue
                out.mutants += 1
                if result.test_outcome == TestOutcome.SURVIVED:
                    spec = item.mutations[0]
                    where = f"{spec.operator_name} #{spec.occurrence} line {spec.start_pos[0]}"
                    out.raw.append(
                        {"where": where, "diff": result.diff or "", "mutant": [spec.operator_name, spec.occurrence]}
                    )
                elif result.output == "timeout":
                    out.timeout += 1
                else:
                    out.killed += 1
    out.seconds = time.monotonic() - start
    if again is not None:  # the saved run's counts, with its survivors replaced by this run's results
        out.mutants, out.killed, out.timeout = saved.mutants, saved.killed + out.killed, saved.timeout + out.timeout
        out.population = saved.population
        out.seconds = saved.seconds
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="default: all of " + ", ".join(MODULES))
    parser.add_argument("--jobs", type=int, default=1, choices=(1, 2), help="modules run at once (one core each)")
    parser.add_argument("--ref", help="mutate a clean clone of this commit instead of a copy of the work tree")
    parser.add_argument("--overlay", nargs="+", default=[], metavar="FILE", help="with --ref: these work-tree files")
    parser.add_argument("--timeout", type=float, default=30.0, help="least seconds a mutant's tests may take")
    parser.add_argument("--min-score", type=float, default=90.0)
    parser.add_argument("--sample", type=int, help="run only this many mutants per module, drawn at random")
    parser.add_argument("--seed", type=int, default=26, help="of --sample's draw")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "mutation")
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="run again only the mutants that survived the run saved in --out (after adding tests)",
    )
    parser.add_argument(
        "--from-results",
        action="store_true",
        help="run nothing: the table from --out's saved results, with"
        " EQUIVALENT as it is now (after listing an equivalent mutant)",
    )
    args = parser.parse_args()
    names = args.modules or list(MODULES)
    unknown = set(names) - set(MODULES)
    if unknown:
        parser.error(f"unknown modules {sorted(unknown)}; known: {', '.join(MODULES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    outcomes = {}
    if args.from_results:
        outcomes = {n: Outcome.load(args.out, n) for n in names}
    else:
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(run_module, n, MODULES[n], args): n for n in names}
            for future in concurrent.futures.as_completed(futures):
                o = future.result()
                outcomes[o.name] = o
                print(f"{o.name}: done in {o.seconds:.0f} s" + (f" -- {o.error}" if o.error else ""), flush=True)
    for o in outcomes.values():
        o.classify()
        o.save(args.out)
    columns = ("mutants", 7), ("killed", 6), ("survived", 8), ("timeout", 7), ("equiv", 5), ("score", 6), ("time", 7)
    print("\n" + f"{'module':<34} " + " ".join(f"{c:>{w}}" for c, w in columns))
    failed = False
    for n in names:
        o = outcomes[n]
        print(
            f"{MODULES[n].path:<34} {o.mutants:>7} {o.killed:>6} {o.survived:>8} {o.timeout:>7} {o.equivalent:>5}"
            f" {o.score:>5.1f}% {o.seconds:>6.0f}s"
        )
        if o.population > o.mutants:
            print(f"{'':<34} a random sample of {o.mutants} of its {o.population} mutants (--sample, --seed)")
        failed |= bool(o.error) or o.score < args.min_score
    print(f"\nsurvivors' diffs: {args.out}/<module>.survivors.txt")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
