"""What the device believes about a package: only what the fleet's TUF metadata says, fetched and
verified by ``tuf.ngclient`` from the root pinned at provisioning (and the roots it signed since).
ngclient refuses expired metadata (a frozen repository), older versions than seen before (rollback),
snapshot/targets mixes, oversized files and anything not signed by the keys the root names."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edgekit.errors import PackageError


@dataclass(frozen=True)
class SignedTarget:
    """A package as the targets role signed it."""

    path: str
    sha256: str
    length: int
    name: str
    version: str


class UpdateTrust:
    """The device's TUF client state: ``folder`` holds the root trusted now and the metadata last
    verified. ``pinned_root``: the root metadata provisioned with the device, the start of its
    chain of trust (used once: later roots replace it in ``folder`` as the fleet rotates keys)."""

    def __init__(self, folder: str | os.PathLike, pinned_root: bytes) -> None:
        from tuf.api.exceptions import RepositoryError
        from tuf.ngclient import Updater

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.folder / "root.json").exists():
            try:  # ngclient checks it is root metadata signed by its own root keys, and caches it
                Updater(str(self.folder), "http://127.0.0.1/", bootstrap=pinned_root)
            except (RepositoryError, ValueError) as exc:
                raise PackageError(f"trusted_root is not the fleet's root metadata: {exc}") from None

    def target(self, package_url: str, path: str) -> SignedTarget:
        """Refresh the metadata from the origin that serves ``package_url`` and return ``path``'s
        signed description. Network trouble is an OSError (tried again later); metadata that does
        not verify, and a target it does not list, are a PackageError (refused)."""
        import urllib3
        from tuf.api import exceptions
        from tuf.ngclient import Updater

        origin = urlsplit(package_url)
        try:  # ngclient's default length limits bound what a hostile server can stream
            updater = Updater(str(self.folder), f"{origin.scheme}://{origin.netloc}/tuf/", bootstrap=None)
            updater.refresh()
            info = updater.get_targetinfo(path)
        except (exceptions.DownloadError, OSError, urllib3.exceptions.HTTPError) as exc:
            raise OSError(f"cannot fetch the fleet's update metadata: {exc}") from None
        except exceptions.ExpiredMetadataError as exc:  # frozen: refused now, tried again when it is fresh
            raise OSError(f"the fleet's update metadata has expired ({exc}); not acting on it") from None
        except (exceptions.RepositoryError, ValueError) as exc:
            raise PackageError(f"the fleet's update metadata is refused: {type(exc).__name__}: {exc}") from None
        if info is None:
            raise PackageError(f"{path} is not in the fleet's signed targets metadata: refusing it")
        custom = info.custom if isinstance(info.custom, dict) else {}
        sha256 = info.hashes.get("sha256")
        if not isinstance(sha256, str):
            raise PackageError(f"{path}'s signed metadata has no sha256")
        return SignedTarget(path, sha256, info.length, str(custom.get("name", "")), str(custom.get("version", "")))
