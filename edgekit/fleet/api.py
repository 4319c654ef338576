"""The fleet manager's HTTP API: devices, telemetry, packages and rollouts as JSON, the package
files themselves with Range support, and ``/openapi.json`` generated from the same route table
the server dispatches on (so the description cannot drift from the code). Everything but what
devices fetch (package files, TUF metadata) and this description needs ``Authorization: Bearer
TOKEN`` (or the console's login cookie, see ``_authorize``): telemetry and the device list are not
public. The same dispatcher serves the browser console (``PAGES``, edgekit.fleet.console):
HTML pages behind a login with the same token."""

from __future__ import annotations

import hmac
import json
import logging
import re
import tempfile
import threading
import uuid
from dataclasses import dataclass
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from edgekit import __version__, package, protocol
from edgekit.errors import EdgekitError
from edgekit.fleet import console
from edgekit.fleet.gates import Gates
from edgekit.fleet.packages import BoundedHTTPServer, PackageStore, _Handler

log = logging.getLogger("edgekit.fleet.api")
MAX_JSON_BYTES = 1 << 20


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI template, e.g. /api/v1/rollouts/{rollout}/{action}
    handler: str
    summary: str
    changes: bool = False  # changes state (POST)
    public: bool = False  # readable without the token: what devices fetch, and this description
    body: str | None = None  # request body media type
    query: tuple[str, ...] = ()

    @property
    def pattern(self) -> re.Pattern:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


ROUTES = (
    Route(
        "GET",
        "/api/v1/devices",
        "devices",
        "The device registry (tags, state, last seen, model)",
        query=("fleet", "tag"),
    ),
    Route(
        "GET",
        "/api/v1/devices/{device}/telemetry",
        "telemetry",
        "A device's most recent telemetry windows",
        query=("fleet", "last"),
    ),
    Route("GET", "/api/v1/packages", "packages", "Stored packages"),
    Route(
        "POST",
        "/api/v1/packages",
        "upload",
        "Upload a package signed by the package key (body: the .tar; header X-Edgekit-Signature: hex)",
        changes=True,
        body="application/x-tar",
    ),
    Route("GET", "/api/v1/rollouts", "rollouts", "Rollouts and their progress"),
    Route(
        "POST",
        "/api/v1/rollouts",
        "deploy",
        "Start a rollout: {package, to: [all | tag:NAME | id:DEV,...], canary, waves, gates, fleet, id}",
        changes=True,
        body="application/json",
    ),
    Route("GET", "/api/v1/rollouts/{rollout}", "rollout", "One rollout, with each failed device's reason"),
    Route(
        "GET",
        "/api/v1/rollouts/{rollout}/events",
        "rollout_events",
        "The rollout's event log (started, waves, gate verdicts with figures, device failures, end)",
        query=("since",),
    ),
    Route(
        "POST",
        "/api/v1/rollouts/{rollout}/{action}",
        "control",
        "pause, resume, abort (stop; updated devices keep the new model) or rollback (stop and roll back)",
        changes=True,
    ),
    Route(
        "POST",
        "/api/v1/tuf/targets",
        "publish_targets",
        "Publish targets metadata signed by the package key (the next version; every target uploaded)",
        changes=True,
        body="application/json",
    ),
    Route(
        "POST",
        "/api/v1/tuf/root",
        "rotate_root",
        "Rotate keys: {root, targets}, the next root signed by the current and new root keys, targets for it",
        changes=True,
        body="application/json",
    ),
    Route("GET", "/packages/{file}", "package_file", "A package file or its signature (Range supported)", public=True),
    Route(
        "GET",
        "/tuf/{file}",
        "metadata_file",
        "TUF metadata: N.root.json, timestamp.json, N.snapshot.json, ...",
        public=True,
    ),
    Route("GET", "/openapi.json", "openapi", "This description", public=True),
)

# The browser console: served by the same dispatcher, left out of /openapi.json (which describes
# the JSON API). Handlers are methods of edgekit.fleet.console.Console.
PAGES = (
    Route("GET", "/", "home", "To the console"),
    Route("GET", "/console", "fleet", "Devices, their state and latest telemetry", query=("tag", "state", "model")),
    Route("GET", "/console/devices/{device}", "device", "A device's charts and deployments", query=("window",)),
    Route("GET", "/console/rollouts", "rollouts", "Every rollout"),
    Route("GET", "/console/rollouts/{rollout}", "rollout", "Waves, gate verdicts, failures, events"),
    Route("GET", "/console/packages", "packages", "Stored packages and who runs them"),
    Route("GET", "/console/login", "login_form", "The login form", query=("next",)),
    Route("POST", "/console/login", "login", "Log in with the fleet token"),
    Route("POST", "/console/logout", "logout", "Log out"),
)


def openapi() -> dict:
    paths: dict = {}
    for route in ROUTES:
        op: dict = {
            "summary": route.summary,
            "operationId": route.handler,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "400": {"description": "Bad request", "content": {"application/json": {}}},
                "404": {"description": "Not found"},
            },
        }
        params = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in re.findall(r"\{(\w+)\}", route.path)
        ]
        params += [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in route.query]
        if params:
            op["parameters"] = params
        if route.body:
            op["requestBody"] = {"required": True, "content": {route.body: {}}}
        if not route.public:
            op["security"] = [{"token": []}]
            op["responses"]["401"] = {"description": "Missing or wrong token"}
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "edgekit fleet manager", "version": __version__},
        "paths": paths,
        "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
    }


class _ApiHandler(_Handler):
    def __init__(self, api: FleetApi, *args, **kwargs) -> None:
        self.api = api
        super().__init__(api.store, *args, **kwargs)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        if url.path == "/" or url.path.startswith("/console"):
            self._page(method, url)
            return
        try:
            for route in ROUTES:
                match = route.pattern.match(url.path)
                if match and route.method == method:
                    if not route.public:
                        self._authorize()
                    if route.handler == "package_file":
                        self.send_package()
                        return
                    if route.handler == "metadata_file":
                        self.send_metadata()
                        return
                    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                    params = {k: unquote(v) for k, v in match.groupdict().items()}
                    result = getattr(self.api, route.handler)(self, query=query, **params)
                    self._json(201 if method == "POST" and route.handler in ("upload", "deploy") else 200, result)
                    return
            raise ApiError(404, f"no route {method} {url.path}; see /openapi.json")
        except ApiError as exc:
            self._json(exc.status, {"error": str(exc)})
        except EdgekitError as exc:  # bad input from the caller: a clear message, the server goes on
            self._json(400, {"error": str(exc)})
        except Exception as exc:
            log.exception("API %s %s", method, self.path)
            self._json(500, {"error": f"internal error: {exc}"})

    def _page(self, method: str, url) -> None:
        """A console page: HTML for success and for every error (never a stack trace)."""
        pages = self.api.console
        try:
            for route in PAGES:
                match = route.pattern.match(url.path)
                if match and route.method == method:
                    if route.handler not in console.OPEN_PAGES and not pages.logged_in(self):
                        self._send_page(pages.to_login(self.path))
                        return
                    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                    unknown = sorted(set(query) - set(route.query))
                    if unknown:
                        raise ApiError(
                            400, f"unknown query parameter(s) {unknown}; this page takes {list(route.query)}"
                        )
                    params = {k: unquote(v) for k, v in match.groupdict().items()}
                    self._send_page(getattr(pages, route.handler)(self, query=query, **params))
                    return
            raise ApiError(404, f"no page {url.path}")
        except (ApiError, console.PageError, EdgekitError) as exc:
            self._send_page(pages.error(getattr(exc, "status", 400), str(exc), pages.logged_in(self)))
        except Exception:
            log.exception("console %s %s", method, self.path)
            self._send_page(pages.error(500, "internal error; the manager's log has the details", False))

    def _send_page(self, page: console.Page) -> None:
        data = page.body.encode()
        self.send_response(page.status)
        for name, value in page.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorize(self) -> None:
        header = self.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        if given and hmac.compare_digest(given.encode(), self.api.token.encode()):
            return
        # the console's buttons: its HttpOnly login cookie, and a header a cross-site form cannot send
        # (SameSite=Strict already keeps the cookie off cross-site requests)
        if self.headers.get(console.BUTTON_HEADER) == "1" and self.api.console.logged_in(self):
            return
        if given:  # a token, not this fleet's: say so rather than ask for one
            raise ApiError(401, "the fleet token given is wrong: use the one in fleet.token beside the database")
        raise ApiError(401, "this needs the fleet token: Authorization: Bearer TOKEN")

    def _json(self, status: int, payload) -> None:
        data = json.dumps(payload, indent=1).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self, limit: int) -> int:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise ApiError(411, "the request needs a Content-Length") from None
        if length > limit:
            raise ApiError(413, f"request body of {length} bytes is over the {limit}-byte limit")
        return length

    def json_body(self) -> dict:
        data = self.rfile.read(self.body(MAX_JSON_BYTES))
        try:
            value = json.loads(data or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"request body is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ApiError(400, "request body must be a JSON object")
        return value

    def json_body_bytes(self, fields: tuple[str, ...]) -> dict[str, bytes]:
        """A JSON object whose ``fields`` are JSON documents, each returned re-encoded as bytes."""
        value = self.json_body()
        missing = [f for f in fields if not isinstance(value.get(f), dict)]
        if missing:
            raise ApiError(400, f"request body needs {', '.join(missing)} as JSON objects")
        return {f: json.dumps(value[f]).encode() for f in fields}


class FleetApi:
    """The route handlers (one method per Route.handler) over a FleetManager and a PackageStore."""

    def __init__(self, manager, store: PackageStore, token: str, public_url: str) -> None:
        self.manager, self.store, self.token = manager, store, token
        self.public_url = public_url.rstrip("/")
        self.fleet = "default"
        self.console = console.Console(self)

    def devices(self, handler, query: dict) -> list[dict]:
        fleet, tag = query.get("fleet", self.fleet), query.get("tag")
        rows = self.manager.store.query(
            "SELECT device, state, last_seen, tags, model, version, sha256, board FROM devices WHERE fleet=? "
            "ORDER BY device",
            (fleet,),
        )
        keys = ("device", "state", "last_seen", "tags", "model", "version", "sha256", "board")
        out = [dict(zip(keys, row, strict=True)) for row in rows]
        for d in out:
            d["tags"] = json.loads(d["tags"] or "[]")
        return [d for d in out if tag is None or tag in d["tags"]]

    def telemetry(self, handler, query: dict, device: str) -> list[dict]:
        try:
            last = int(query.get("last", 10))
        except ValueError:
            raise ApiError(400, "last must be a number of windows") from None
        fleet = query.get("fleet", self.fleet)
        rows = self.manager.store.query(
            "SELECT payload FROM telemetry WHERE fleet=? AND device=? ORDER BY ts DESC LIMIT ?", (fleet, device, last)
        )
        if not rows and device not in self.manager.devices(fleet):  # an empty table would read as "no data yet"
            raise ApiError(404, f"no device {device!r} in fleet {fleet!r}")
        return [json.loads(p) for (p,) in rows]

    def packages(self, handler, query: dict) -> list[dict]:
        published = self.store.repository.published() if self.store.repository is not None else {}
        return [{**info, "published": info["sha256"] in published} for info in self.store.list()]

    def upload(self, handler, query: dict) -> dict:
        if self.store.repository is None:
            raise ApiError(400, "this manager has no update metadata (edgekit fleet init)")
        try:
            signature = bytes.fromhex(handler.headers.get("X-Edgekit-Signature", ""))
        except ValueError:
            signature = b""
        if not signature:
            raise ApiError(400, "upload needs the package's signature in X-Edgekit-Signature (hex)")
        remaining = handler.body(package.MAX_PACKAGE_BYTES)
        fd, tmp = tempfile.mkstemp(prefix=".upload.", dir=self.store.root)
        try:
            with open(fd, "wb") as out:
                while remaining:
                    chunk = handler.rfile.read(min(remaining, 1 << 16))
                    if not chunk:
                        raise ApiError(400, "upload ended before Content-Length bytes")
                    out.write(chunk)
                    remaining -= len(chunk)
            info = self.store.add_upload(Path(tmp), signature, self.store.repository.targets_public_keys())
            info["published"] = self.store.repository.target_for(info["sha256"]) is not None
            return info
        finally:
            Path(tmp).unlink(missing_ok=True)

    def rollouts(self, handler, query: dict) -> list[dict]:
        return self.manager.rollouts()

    def rollout(self, handler, query: dict, rollout: str) -> dict:
        self._known(rollout)
        return self.manager.rollout_status(rollout)

    def rollout_events(self, handler, query: dict, rollout: str) -> list[dict]:
        self._known(rollout)
        try:
            since = float(query.get("since", 0))
        except ValueError:
            raise ApiError(400, f"since must be a timestamp in seconds (got {query['since']!r})") from None
        return self.manager.events(rollout, since)

    def _known(self, rollout: str) -> None:
        if not self.manager.store.query("SELECT 1 FROM rollouts WHERE id=?", (rollout,)):
            raise ApiError(404, f"no rollout {rollout!r}; GET /api/v1/rollouts lists them")

    def deploy(self, handler, query: dict) -> dict:
        request = handler.json_body()
        info = self.store.info(str(request.get("package", "")))
        if info is None:
            raise ApiError(
                404, f"no stored package {request.get('package')!r}; upload it first (POST /api/v1/packages)"
            )
        published = self.store.repository.target_for(info["sha256"]) if self.store.repository else None
        if published is None:
            raise ApiError(
                409,
                f"package {info['name']} {info['version']} is not in the fleet's signed targets metadata: "
                "publish it first (edgekit fleet deploy --sign PACKAGE.key)",
            )
        fleet = request.get("fleet") or query.get("fleet") or self.fleet
        targets = request.get("to") or ["all"]
        devices = self.manager.resolve_targets(fleet, [targets] if isinstance(targets, str) else list(targets))
        rollout_id = _rollout_id(request.get("id"), info)
        deploy = {
            "deployment": rollout_id,
            "package": published[0],
            "sha256": info["sha256"],
            "size": info["size"],
            "url": f"{self.public_url}/packages/{info['sha256']}.tar",
            "name": info["name"],
            "version": info["version"],
        }
        try:
            gates = Gates.from_dict(request.get("gates"))
            canary = float(request.get("canary", 0.05))
            waves = tuple(float(w) for w in request.get("waves", (0.25, 0.5, 1.0)))
        except (TypeError, ValueError) as exc:
            raise ApiError(400, f"bad rollout parameters: {exc}") from None
        self.manager.start_rollout(fleet, deploy, devices, canary=canary, waves=waves, gates=gates)
        return self.manager.rollout_status(rollout_id)

    def control(self, handler, query: dict, rollout: str, action: str) -> dict:
        actions = {
            "pause": self.manager.pause,
            "resume": self.manager.resume,
            "abort": self.manager.abort,
            "rollback": self.manager.rollback,
        }
        if action not in actions:
            raise ApiError(404, f"unknown action {action!r}; one of {sorted(actions)}")
        actions[action](rollout)
        return self.manager.rollout_status(rollout)

    def publish_targets(self, handler, query: dict) -> dict:
        data = handler.rfile.read(handler.body(MAX_JSON_BYTES * 4))
        version = self._repository().publish_targets(data, self.store.sizes())
        return {"targets_version": version}

    def rotate_root(self, handler, query: dict) -> dict:
        request = handler.json_body_bytes(("root", "targets"))
        version = self._repository().rotate(request["root"], request["targets"], self.store.sizes())
        return {"root_version": version}

    def _repository(self):
        if self.store.repository is None:
            raise ApiError(400, "this manager has no update metadata (edgekit fleet init)")
        return self.store.repository

    def openapi(self, handler, query: dict) -> dict:
        return openapi()


def _rollout_id(given, info: dict) -> str:
    """The id a deploy request gives, which every device must accept (protocol.SAFE_ID), or one
    made from the package's name and version (whatever characters those hold) and a random part."""
    if given is None:
        return protocol.safe_id(f"{info['name']}-{info['version']}", suffix=f"-{uuid.uuid4().hex[:8]}")
    if not isinstance(given, str) or not protocol.SAFE_ID.fullmatch(given):
        raise ApiError(400, f"rollout id {str(given)[:80]!r} is not valid: an id is {protocol.SAFE_ID_RULE}")
    return given


def serve_api(
    manager,
    store: PackageStore,
    token: str,
    host: str = "127.0.0.1",
    port: int = 0,
    public_url: str | None = None,
) -> tuple[ThreadingHTTPServer, FleetApi]:
    """Serve in a background thread; ``server.server_address`` has the port."""
    api = FleetApi(manager, store, token, public_url or "")
    server = BoundedHTTPServer((host, port), partial(_ApiHandler, api))
    if not public_url:
        api.public_url = f"http://{host}:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, name="edgekit-fleet-api", daemon=True).start()
    return server, api
