"""What a device's checks cost per deploy message: the manager's signature, the device's
signature check with its sequence persisted (fsync), and the field validation of the deploy.

    python bench/signing.py [--messages 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402

DEPLOY = {
    "deployment": "r1",
    "package": "digits-2.tar.xz",
    "sha256": "a" * 64,
    "size": 40_000,
    "url": "http://127.0.0.1:8765/packages/x.tar",
    "signature": "b" * 128,
    "name": "digits",
    "version": "2",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    from edgekit.agent.ota import Deployment
    from edgekit.signing import CommandSigner, CommandVerifier

    signer = CommandSigner("11" * 32)
    with tempfile.TemporaryDirectory() as tmp:
        verifier = CommandVerifier(signer.public, "f1", "dev00", Path(tmp) / "commands.json")
        n = args.messages
        start = time.perf_counter()
        signed = [signer.sign(DEPLOY, "f1", "dev00", 3600) for _ in range(n)]
        sign_us = (time.perf_counter() - start) / n * 1e6
        start = time.perf_counter()
        for message in signed:
            verifier.check("deploy", message)
        verify_us = (time.perf_counter() - start) / n * 1e6
        start = time.perf_counter()
        for _ in range(n):
            Deployment.from_message(DEPLOY, frozenset({"127.0.0.1"}))
        fields_us = (time.perf_counter() - start) / n * 1e6
    print(
        table(
            [
                ["manager: sign a deploy", f"{sign_us:.0f}"],
                ["device: verify signature, fleet, device, expiry, sequence (persisted, fsync)", f"{verify_us:.0f}"],
                ["device: validate every deploy field", f"{fields_us:.1f}"],
            ],
            ["step", "us per message"],
        )
    )


if __name__ == "__main__":
    main()
