"""Health check of a candidate model, run in its own process by the OTA state machine:
loads it, runs random inputs, checks the outputs are finite and the latency within budget.
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
    args = parser.parse_args()
    from edgekit.errors import EdgekitError
    from edgekit.runtime import load
    from edgekit.runtime.benchmark import random_inputs

    try:
        session = load(args.model, threads=1)
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


if __name__ == "__main__":
    raise SystemExit(main())
