"""Health check of a candidate model, run in its own process by the OTA state machine:
loads it, checks its signature (against its manifest's and the serving model's, when given),
runs random inputs, checks the outputs are finite and the latency within budget.
Prints a JSON summary; exits non-zero (with the reason on stderr) when unhealthy."""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--budget-ms", type=float)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--manifest", help="the candidate package's manifest.json: the signature it records and its preprocessing"
    )
    parser.add_argument(
        "--serving", help="the serving package's manifest.json: the signature the applications are written for"
    )
    args = parser.parse_args()
    from edgekit.errors import EdgekitError
    from edgekit.runtime import load
    from edgekit.runtime.benchmark import random_inputs

    try:
        session = load(args.model, threads=1)
        incompatible = incompatibility(session.signature, args.manifest, args.serving)
        if incompatible:
            print(f"unhealthy: {incompatible}", file=sys.stderr)
            return 1
        feeds = random_inputs(session)
        session.run(feeds)
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            outputs = session.run(feeds)
            times.append(1000 * (time.perf_counter() - start))
    except EdgekitError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if not all(np.all(np.isfinite(v)) for v in outputs.values()):
        print("unhealthy: the model produces NaN or Inf", file=sys.stderr)
        return 1
    p50 = float(np.median(times))
    if args.budget_ms and p50 > args.budget_ms:
        print(f"unhealthy: p50 latency {p50:.2f} ms over the {args.budget_ms} ms budget", file=sys.stderr)
        return 1
    print(json.dumps({"p50_ms": p50, "outputs": sorted(outputs), "backend": session.backend}))
    return 0


def incompatibility(signature, manifest_path: str | None, serving_path: str | None) -> str | None:
    """Why the model (its Session's ``signature``) cannot replace the serving one, or None: its
    manifest describes another model, its preprocessing cannot feed it, or its inputs and outputs
    differ from the serving model's and the manifest does not say the change is intended."""
    from edgekit import package

    manifest = _read_manifest(manifest_path) if manifest_path else {}
    recorded = package.manifest_signature(manifest)
    if recorded is not None and signature.differences(recorded):
        return "the model is not the one its manifest describes: " + "; ".join(signature.differences(recorded)[:4])
    if manifest.get("preprocessing"):
        problems = package.preprocessing_problems(manifest["preprocessing"], signature)
        if problems:
            return "incompatible: the package's preprocessing does not fit its model: " + "; ".join(problems)
    serving = package.manifest_signature(_read_manifest(serving_path)) if serving_path else None
    if serving is None or manifest.get("io_change"):
        return None
    differences = signature.differences(serving)
    if not differences:
        return None
    return (
        "incompatible with the serving model: "
        + "; ".join(differences[:4])
        + " (package it with --io-change if the applications expect that)"
    )


def _read_manifest(path: str) -> dict:
    from edgekit.errors import PackageError

    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as exc:
        raise PackageError(f"cannot read the manifest {path}: {exc}") from None
    if not isinstance(manifest, dict):
        raise PackageError(f"the manifest {path} is not a JSON object")
    return manifest


if __name__ == "__main__":
    raise SystemExit(main())
