"""A client of the fleet manager's HTTP API (what the ``edgekit fleet`` commands use)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from edgekit.errors import FleetError, InputError

PUBLIC_PATHS = ("/tuf/", "/packages/", "/openapi.json")  # what devices fetch: no token
NEEDS_TOKEN = "the fleet API needs its token: --token, $EDGEKIT_FLEET_TOKEN or the DB.token file"


def _segment(value: str) -> str:
    """One path segment of a URL: every reserved character quoted, '/' too (the API unquotes it)."""
    return urllib.parse.quote(value, safe="")


class FleetClient:
    def __init__(self, url: str, token: str | None = None, fleet: str = "default", timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"--api {url!r} is not an http(s) URL, e.g. http://127.0.0.1:8765")
        self.url, self.token, self.fleet, self.timeout = url.rstrip("/"), token, fleet, timeout

    def _call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, **query):
        query = {k: v for k, v in {"fleet": self.fleet, **query}.items() if v is not None}
        request = urllib.request.Request(
            f"{self.url}{path}?{urllib.parse.urlencode(query)}", data=body, method=method, headers=headers or {}
        )
        if not path.startswith(PUBLIC_PATHS):
            if not self.token and method != "GET":  # refused before a package travels
                raise InputError(NEEDS_TOKEN)
            if self.token:
                request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and not self.token:
                raise InputError(NEEDS_TOKEN) from None
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except (ValueError, AttributeError):
                message = exc.reason
            raise FleetError(f"the fleet manager refused {method} {path}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FleetError(
                f"cannot reach the fleet manager at {self.url} ({reason}); start edgekit fleet serve or pass --api"
            ) from None

    def devices(self, tag: str | None = None) -> list[dict]:
        return self._call("GET", "/api/v1/devices", tag=tag)

    def telemetry(self, device: str, last: int = 10) -> list[dict]:
        return self._call("GET", f"/api/v1/devices/{_segment(device)}/telemetry", last=last)

    def packages(self) -> list[dict]:
        return self._call("GET", "/api/v1/packages")

    def upload(self, package_path: str | Path) -> dict:
        path = Path(package_path)
        try:
            data = path.read_bytes()
            signature = Path(str(path) + ".sig").read_text().strip()
        except OSError as exc:
            raise InputError(
                f"cannot read the package {exc.filename}: {exc.strerror} (edgekit package makes both)"
            ) from None
        headers = {"Content-Type": "application/x-tar", "X-Edgekit-Signature": signature}
        return self._call("POST", "/api/v1/packages", data, headers)

    def metadata(self, name: str) -> bytes:
        """One of the fleet's TUF metadata files (root.json and targets.json: the newest)."""
        return json.dumps(self._call("GET", f"/tuf/{name}")).encode()

    def publish(self, package_path: str | Path, manifest: dict, targets_signer) -> int:
        """Add an uploaded package to the fleet's targets metadata, signed here with the package
        key (the manager never holds it); returns the new targets version."""
        from edgekit.fleet.repository import sign_targets

        signed = sign_targets(self.metadata("targets.json"), targets_signer, Path(package_path), manifest)
        headers = {"Content-Type": "application/json"}
        return self._call("POST", "/api/v1/tuf/targets", signed, headers)["targets_version"]

    def rotate_targets_key(self, root_signer, new_targets_signer) -> int:
        """A new root trusting ``new_targets_signer`` for targets; returns its version."""
        from edgekit.fleet.repository import rotate_targets_key

        root, targets = rotate_targets_key(
            self.metadata("root.json"), self.metadata("targets.json"), root_signer, new_targets_signer
        )
        body = json.dumps({"root": json.loads(root), "targets": json.loads(targets)}).encode()
        return self._call("POST", "/api/v1/tuf/root", body, {"Content-Type": "application/json"})["root_version"]

    def deploy(
        self,
        sha256: str,
        to: list[str],
        canary: float = 0.05,
        waves: list[float] | tuple[float, ...] = (0.25, 0.5, 1.0),
        gates: dict | None = None,
        rollout_id: str | None = None,
    ) -> dict:
        body = {"package": sha256, "to": to, "canary": canary, "waves": list(waves), "gates": gates or {}}
        if rollout_id:
            body["id"] = rollout_id
        return self._call("POST", "/api/v1/rollouts", json.dumps(body).encode(), {"Content-Type": "application/json"})

    def rollouts(self) -> list[dict]:
        return self._call("GET", "/api/v1/rollouts")

    def rollout(self, rollout_id: str) -> dict:
        return self._call("GET", f"/api/v1/rollouts/{_segment(rollout_id)}")

    def events(self, rollout_id: str, since: float = 0.0) -> list[dict]:
        return self._call("GET", f"/api/v1/rollouts/{_segment(rollout_id)}/events", since=repr(since))

    def control(self, rollout_id: str, action: str) -> dict:
        return self._call("POST", f"/api/v1/rollouts/{_segment(rollout_id)}/{_segment(action)}", b"{}")
