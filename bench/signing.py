"""What a device's checks cost per deploy message: the manager's signature, the device's
signature check with its sequence persisted (fsync), the field validation of the deploy, and the
TUF metadata refresh (python-tuf ngclient over loopback HTTP) that says what the package is, with
1 and 100 packages published; and on the manager, taking a new targets metadata upload.

    python -m bench.signing [--messages 2000] [--refreshes 50]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file: the imports below need the repository root, which -m puts on sys.path
    sys.exit(f"run from the repository root: python -m bench.{Path(__file__).stem}")
from bench._common import table  # noqa: E402

DEPLOY = {
    "deployment": "r1",
    "package": "digits-2.tar.xz",
    "sha256": "a" * 64,
    "size": 40_000,
    "url": "http://127.0.0.1:8765/packages/x.tar",
    "name": "digits",
    "version": "2",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--refreshes", type=int, default=50)
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
        tuf_rows = tuf_costs(Path(tmp), args.refreshes)
    print(
        table(
            [
                ["manager: sign a deploy", f"{sign_us:.0f}"],
                ["device: verify signature, fleet, device, expiry, sequence (persisted, fsync)", f"{verify_us:.0f}"],
                ["device: validate every deploy field", f"{fields_us:.1f}"],
                *tuf_rows,
            ],
            ["step", "us per message"],
        )
    )


def tuf_costs(work: Path, refreshes: int) -> list[list[str]]:
    """Per deployment on the device: a fresh ngclient refresh (timestamp, snapshot, targets over
    HTTP, all verified) and the target lookup; on the manager: verifying and storing an upload."""
    from edgekit import keys
    from edgekit.agent.trust import UpdateTrust
    from edgekit.fleet import repository
    from edgekit.fleet.packages import PackageStore, serve_packages

    signers = {}
    for name in ("root", "package", "online"):
        keys.create(work / f"{name}.key", work / f"{name}.pub")
        signers[name] = repository.signer_from_file(work / f"{name}.key", name)
    repository.create(work / "fleet.tuf", signers["root"], signers["package"], keys.read_public(work / "online.pub"))
    repo = repository.Repository(work / "fleet.tuf", signers["online"])
    store = PackageStore(work / "store", repo)
    server = serve_packages(store)
    url = f"http://127.0.0.1:{server.server_address[1]}/packages/x.tar"
    rows = []
    try:
        for count in (1, 100):
            publish_us = []
            while len(repo.targets().signed.targets) < count:
                i = len(repo.targets().signed.targets)
                archive = work / f"m-{i}.tar"
                archive.write_bytes(i.to_bytes(4, "big") * 1000)
                store.add(archive, hashlib.sha256(archive.read_bytes()).hexdigest())
                signed = repository.sign_targets(
                    repo.file("targets.json").read_bytes(),
                    signers["package"],
                    archive,
                    {"name": "m", "version": str(i)},
                )
                start = time.perf_counter()
                repo.publish_targets(signed, store.sizes())
                publish_us.append((time.perf_counter() - start) * 1e6)
            trust = UpdateTrust(work / f"device-{count}", repo.file("root.json").read_bytes())
            start = time.perf_counter()
            for _ in range(refreshes):
                trust.target(url, repository.target_path("m", "0"))
            refresh_us = (time.perf_counter() - start) / refreshes * 1e6
            rows.append([f"device: TUF refresh + target lookup, {count} package(s) published", f"{refresh_us:.0f}"])
            rows.append([f"manager: verify and store a targets upload, {count} package(s)", f"{publish_us[-1]:.0f}"])
    finally:
        server.shutdown()
    return rows


if __name__ == "__main__":
    main()
