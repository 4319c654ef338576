"""The fleet manager's package store: content-addressed files served over HTTP with Range
(so devices resume interrupted downloads), beside the TUF metadata that says what they are
(``/tuf/``, edgekit.fleet.repository)."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from edgekit.files import write_atomic

RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class PackageStore:
    def __init__(self, root: str | os.PathLike, repository=None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.repository = repository  # edgekit.fleet.repository.Repository: the metadata served at /tuf/

    def add(self, archive: str | os.PathLike, sha256: str) -> Path:
        """Store a verified package under its sha256 (with its signature file)."""
        target = self.root / f"{sha256}.tar"
        if not target.exists():
            tmp = target.with_suffix(".part")
            shutil.copyfile(archive, tmp)
            os.replace(tmp, target)
        signature = Path(str(archive) + ".sig")
        if signature.exists():
            shutil.copyfile(signature, self.root / f"{sha256}.tar.sig")
        return target

    def add_upload(self, data_path: Path, signature: bytes, public_keys: list[str]) -> dict:
        """A package uploaded to the manager: its detached signature verified with the package
        (targets) key(s) the fleet's root trusts before it is stored; returns its description.
        Devices never rely on this check: they install only what the TUF targets metadata lists."""
        from edgekit import package

        digest = package.verify(data_path, public_key=public_keys, signature=signature)
        manifest = package.read_manifest(data_path)
        target = self.root / f"{digest}.tar"
        if not target.exists():
            os.replace(data_path, target)
        write_atomic(self.root / f"{digest}.tar.sig", signature.hex().encode())
        info = {
            "sha256": digest,
            "size": target.stat().st_size,
            "signature": signature.hex(),
            "name": manifest.get("name", ""),
            "version": manifest.get("version", ""),
            "manifest": manifest,
        }
        write_atomic(self.root / f"{digest}.json", json.dumps(info).encode())
        return info

    def info(self, sha256: str) -> dict | None:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            return None
        try:
            return json.loads((self.root / f"{sha256}.json").read_text())
        except (OSError, ValueError):
            return None

    def sizes(self) -> dict[str, int]:
        """sha256 -> size of every stored package (what targets metadata may list)."""
        return {p.stem: p.stat().st_size for p in self.root.glob("*.tar") if re.fullmatch(r"[0-9a-f]{64}", p.stem)}

    def list(self) -> list[dict]:
        return [i for p in sorted(self.root.glob("*.json")) if (i := self.info(p.stem)) is not None]

    def path(self, name: str) -> Path | None:
        if not re.fullmatch(r"[0-9a-f]{64}\.tar(\.sig)?", name):
            return None
        path = self.root / name
        return path if path.is_file() else None


class _Handler(BaseHTTPRequestHandler):
    def __init__(self, store: PackageStore, *args, **kwargs) -> None:
        self.store = store
        super().__init__(*args, **kwargs)

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/tuf/"):
            self.send_metadata()
        else:
            self.send_package()

    def send_metadata(self) -> None:
        repository = self.store.repository
        name = urlsplit(self.path).path[len("/tuf/") :]
        path = repository.file(name) if repository is not None else None
        if path is None:
            self.send_error(404, "no such metadata")
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def send_package(self) -> None:
        path = self.store.path(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/packages/") else None
        if path is None:
            self.send_error(404, "no such package")
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        match = RANGE.match(self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else size - 1
            if start >= size or end < start:
                self.send_error(416, "range not satisfiable")
                return
            end = min(end, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        with path.open("rb") as f:
            f.seek(start)
            remaining = end - start + 1
            while remaining:
                chunk = f.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)


class BoundedHTTPServer(ThreadingHTTPServer):
    """At most ``workers`` connections at work at once (the rest wait in the listen backlog), and a
    connection that sends nothing for ``idle_s`` is closed: idle or slow clients cannot take every
    thread and file descriptor of the manager."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address, handler, workers: int = 64, idle_s: float = 5.0) -> None:
        self._slots = threading.BoundedSemaphore(workers)
        self.idle_s = idle_s
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        request.settimeout(self.idle_s)
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        pass  # a client that timed out or hung up: nothing to log (1,000 of them wrote 25 MB)


def serve_packages(store: PackageStore, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Start serving in a background thread; ``server.server_address`` has the port."""
    server = BoundedHTTPServer((host, port), partial(_Handler, store))
    threading.Thread(target=server.serve_forever, name="edgekit-packages", daemon=True).start()
    return server
