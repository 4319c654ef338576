"""The fleet console: server-rendered HTML pages (fleet, device, rollouts, packages) served by the
manager's HTTP server from the route table in edgekit.fleet.api (``PAGES``). Tables and charts
work without JavaScript; a small inline script refreshes the live parts and drives the rollout
buttons. Reading needs a login with the fleet token; every value reaches the HTML through
Jinja2's autoescaping, since device ids, versions and reasons come from the network."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import time
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from edgekit.fleet.console.charts import Chart, Series
from edgekit.protocol import FAILED_STEPS, ROLLOUT_ENDS, STATUS_STATES, RolloutState, Step

COOKIE = "edgekit_console"
BUTTON_HEADER = "X-Edgekit-Console"  # sent by the console's buttons with the login cookie
OPEN_PAGES = ("login_form", "login", "logout")  # everything else needs the login
CURRENT_S = 300.0  # the fleet page's "latest window": one sent in the last 5 minutes (30 at 10 s)
WINDOWS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}
DEVICE_WINDOWS_MAX = 20_000  # telemetry windows one device chart reads at most (7 days at 30 s)
NEXT_PAGE = re.compile(r"/console[A-Za-z0-9/_.~%?=&+-]*")  # where a login may return: console paths only
MAX_LOGIN_BYTES = 4096
SECTIONS = {  # the menu entry each page is under
    "fleet.html": "fleet",
    "device.html": "fleet",
    "rollouts.html": "rollouts",
    "rollout.html": "rollouts",
    "packages.html": "packages",
}
ROLLOUT_STATES_WITH_BUTTONS = {
    "pause": (RolloutState.RUNNING,),
    "resume": (RolloutState.PAUSED,),
    "abort": (RolloutState.RUNNING, RolloutState.PAUSED),
    "rollback": (RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.DONE, RolloutState.ABORTED),
}


@dataclass
class Page:
    status: int
    body: str
    headers: list[tuple[str, str]]


class PageError(Exception):
    """A 400 or 404 page, with a message for the visitor."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _number(value) -> float | None:
    """A finite number from a network payload, or None (strings, booleans, NaN are not figures)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _field(window: dict, *path: str) -> float | None:
    value = window
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return _number(value)


def _ago(ts) -> str:
    ts = _number(ts)
    if ts is None:
        return "never"
    seconds = time.time() - ts
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _when(ts) -> str:
    ts = _number(ts)
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _figure(value, digits: int = 1) -> str:
    value = _number(value)
    return "-" if value is None else f"{value:,.{digits}f}"


def _size(value) -> str:
    value = _number(value) or 0.0
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def _percent(value) -> str:
    value = _number(value)
    return "-" if value is None else f"{value:.1%}"


def _device_url(device: str) -> str:
    return "/console/devices/" + quote(str(device), safe="")


def _rollout_url(rollout: str) -> str:
    return "/console/rollouts/" + quote(str(rollout), safe="")


def _texts(value) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


class Console:
    """The page handlers (one method per PAGES route handler) over a FleetApi."""

    def __init__(self, api) -> None:
        self.api = api
        self.templates = Environment(
            loader=FileSystemLoader(Path(__file__).with_name("templates")),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            ago=_ago,
            when=_when,
            figure=_figure,
            size=_size,
            percent=_percent,
            device_url=_device_url,
            rollout_url=_rollout_url,
        )

    @property
    def store(self):
        return self.api.manager.store

    # --- login ---------------------------------------------------------------------------------
    def _session(self) -> str:
        """The cookie's value: proof of the token without being it (a new token logs everyone out)."""
        return hmac.new(self.api.token.encode(), b"edgekit console session", hashlib.sha256).hexdigest()

    def logged_in(self, handler) -> bool:
        try:
            cookie = SimpleCookie(handler.headers.get("Cookie", ""))
        except CookieError:
            return False
        given = cookie[COOKIE].value if COOKIE in cookie else ""
        return bool(given) and hmac.compare_digest(given.encode(), self._session().encode())

    def to_login(self, path: str) -> Page:
        return self._redirect("/console/login?" + urlencode({"next": _console_path(path)}))

    def login_form(self, handler, query: dict, message: str = "", status: int = 200) -> Page:
        next_page = _console_path(query.get("next", ""))
        return self._render("login.html", status, next=next_page, message=message, logged_in=False)

    def login(self, handler, query: dict) -> Page:
        length = handler.body(MAX_LOGIN_BYTES)
        form = {k: v[-1] for k, v in parse_qs(handler.rfile.read(length).decode("utf-8", "replace")).items()}
        given = form.get("token", "").strip()
        if not given or not hmac.compare_digest(given.encode(), self.api.token.encode()):
            return self.login_form(handler, {"next": form.get("next", "/console")}, "That is not the fleet token.", 401)
        page = self._redirect(_console_path(form.get("next", "")))
        page.headers.append(("Set-Cookie", f"{COOKIE}={self._session()}; HttpOnly; SameSite=Strict; Path=/"))
        return page

    def logout(self, handler, query: dict) -> Page:
        page = self._redirect("/console/login")
        page.headers.append(("Set-Cookie", f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"))
        return page

    # --- pages ---------------------------------------------------------------------------------
    def home(self, handler, query: dict) -> Page:
        return self._redirect("/console")

    def fleet(self, handler, query: dict) -> Page:
        state = query.get("state", "")
        if state not in ("", *STATUS_STATES):
            raise PageError(400, f"state must be one of {list(STATUS_STATES)} (got {state!r})")
        tag, model = query.get("tag", ""), query.get("model", "")
        devices = self._fleet_devices()
        counts = {
            "total": len(devices),
            "online": sum(1 for d in devices if d["state"] == "online"),
            "offline": sum(1 for d in devices if d["state"] != "online"),
            "reporting": sum(1 for d in devices if d["window"]),
        }
        versions: dict[str, int] = {}
        for d in devices:
            key = f"{d['model'] or '(no model)'} {d['version'] or ''}".strip()
            versions[key] = versions.get(key, 0) + 1
        shown = [
            d
            for d in devices
            if (not tag or tag in d["tags"])
            and (not state or d["state"] == state)
            and (not model or d["model"] == model)
        ]
        return self._render(
            "fleet.html",
            devices=shown,
            counts=counts,
            versions=sorted(versions.items()),
            tags=sorted({t for d in devices for t in d["tags"]}),
            models=sorted({d["model"] for d in devices if d["model"]}),
            chosen={"tag": tag, "state": state, "model": model},
            states=STATUS_STATES,
            current_min=int(CURRENT_S // 60),
        )

    def _fleet_devices(self) -> list[dict]:
        fleet = self.api.fleet
        rows = self.store.query(
            "SELECT device, state, last_seen, tags, model, version, board FROM devices WHERE fleet=? ORDER BY device",
            (fleet,),
        )
        # each device's newest recent window: a scan of the (fleet, ts) index over the last minutes,
        # newest last. (SQLite plans a GROUP BY device on the primary key (fleet, device, seq, ts),
        # which walks every window the fleet ever sent.)
        recent = self.store.query(
            "SELECT device, payload FROM telemetry WHERE fleet=? AND ts>=? ORDER BY ts",
            (fleet, time.time() - CURRENT_S),
        )
        windows = {device: _window(payload) for device, payload in dict(recent).items()}
        out = []
        for device, state, last_seen, tags, model, version, board in rows:
            window = windows.get(device, {})
            power = window.get("power") if isinstance(window.get("power"), dict) else {}
            out.append(
                {
                    "device": device,
                    "state": state,
                    "last_seen": last_seen,
                    "tags": _texts(_json(tags, [])),
                    "board": board,
                    "model": model,
                    "version": version,
                    "window": bool(window),
                    "p90_ms": _field(window, "latency", "p90_ms"),
                    "throughput": _field(window, "throughput_ips"),
                    "watts": _field(window, "power", "watts"),
                    "watts_estimated": bool(power.get("estimated")),
                    "temp_c": _field(window, "temp_c"),
                }
            )
        return out

    def device(self, handler, query: dict, device: str) -> Page:
        window_name = query.get("window", "1h")
        if window_name not in WINDOWS:
            raise PageError(400, f"window must be one of {list(WINDOWS)} (got {window_name!r})")
        fleet = self.api.fleet
        rows = self.store.query(
            "SELECT state, last_seen, tags, model, version, sha256 FROM devices WHERE fleet=? AND device=?",
            (fleet, device),
        )
        if not rows:
            raise PageError(404, f"no device {device!r} in fleet {fleet!r}")
        state, last_seen, tags, model, version, sha256 = rows[0]
        t1 = time.time()
        t0 = t1 - WINDOWS[window_name]
        payloads = self.store.query(
            "SELECT payload FROM telemetry WHERE fleet=? AND device=? AND ts>=? ORDER BY ts DESC LIMIT ?",
            (fleet, device, t0, DEVICE_WINDOWS_MAX),
        )
        windows = [w for w in (_window(p) for (p,) in reversed(payloads)) if _number(w.get("ts")) is not None]
        history = self.store.query(
            "SELECT d.deployment, d.step, d.ts, d.reason, d.switched_ts, r.deploy FROM deployment_state d "
            "LEFT JOIN rollouts r ON r.id=d.deployment WHERE d.fleet=? AND d.device=? ORDER BY d.ts DESC LIMIT 200",
            (fleet, device),
        )
        deployments = [
            {
                "deployment": deployment,
                "known": deploy is not None,
                "version": _json(deploy, {}).get("version") if deploy else None,
                "name": _json(deploy, {}).get("name") if deploy else None,
                "step": step,
                "ts": ts,
                "reason": reason,
                "switched_ts": switched,
            }
            for deployment, step, ts, reason, switched, deploy in history
        ]
        charts = [chart.geometry() for chart in _device_charts(windows, t0, t1)]
        return self._render(
            "device.html",
            device={
                "device": device,
                "state": state,
                "last_seen": last_seen,
                "tags": _texts(_json(tags, [])),
                "model": model,
                "version": version,
                "sha256": sha256,
            },
            charts=charts,
            windows=list(WINDOWS),
            window=window_name,
            window_count=len(windows),
            deployments=deployments,
        )

    def rollouts(self, handler, query: dict) -> Page:
        return self._render("rollouts.html", rollouts=list(reversed(self.api.manager.rollouts())))

    def rollout(self, handler, query: dict, rollout: str) -> Page:
        if not self.store.query("SELECT 1 FROM rollouts WHERE id=?", (rollout,)):
            raise PageError(404, f"no rollout {rollout!r}")
        status = self.api.manager.rollout_status(rollout)
        events = self.api.manager.events(rollout)
        return self._render(
            "rollout.html",
            rollout=status,
            waves=_waves(status),
            verdicts=[e for e in events if e["kind"] == "gate"],
            events=events,
            buttons={action: status["state"] in states for action, states in ROLLOUT_STATES_WITH_BUTTONS.items()},
        )

    def packages(self, handler, query: dict) -> Page:
        running: dict[str, list[str]] = {}
        for device, sha256 in self.store.query(
            "SELECT device, sha256 FROM devices WHERE fleet=? ORDER BY device", (self.api.fleet,)
        ):
            running.setdefault(sha256, []).append(device)
        packages = []
        for info in sorted(self.api.store.list(), key=lambda i: (str(i.get("name")), str(i.get("version")))):
            manifest = info.get("manifest") if isinstance(info.get("manifest"), dict) else {}
            compression = manifest.get("compression") if isinstance(manifest.get("compression"), dict) else {}
            io = manifest.get("io") if isinstance(manifest.get("io"), dict) else {}
            packages.append(
                {
                    "name": info.get("name"),
                    "version": info.get("version"),
                    "sha256": info.get("sha256", ""),
                    "size": info.get("size"),
                    "compression": compression.get("method", "-"),
                    "model_bytes": compression.get("model_bytes"),
                    "inputs": _tensors(io.get("inputs")),
                    "outputs": _tensors(io.get("outputs")),
                    "devices": running.get(info.get("sha256"), []),
                }
            )
        return self._render("packages.html", packages=packages)

    def error(self, status: int, message: str, logged_in: bool) -> Page:
        return self._render("error.html", status, logged_in, code=status, message=message)

    # --- responses ----------------------------------------------------------------------------
    def _render(self, template: str, status: int = 200, logged_in: bool = True, **values) -> Page:
        nonce = secrets.token_urlsafe(16)
        section = SECTIONS.get(template, "")
        body = self.templates.get_template(template).render(nonce=nonce, logged_in=logged_in, section=section, **values)
        return Page(status, body, _headers(nonce))

    @staticmethod
    def _redirect(location: str) -> Page:
        return Page(303, "", [("Location", location), ("Cache-Control", "no-store")])


def _console_path(path: str) -> str:
    """Where a login may send the visitor back to: a console path on this server, nothing else."""
    return path if NEXT_PAGE.fullmatch(path) else "/console"


def _headers(nonce: str) -> list[tuple[str, str]]:
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("Content-Security-Policy", policy),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
    ]


def _json(text, default):
    try:
        value = json.loads(text) if text else default
    except (TypeError, ValueError):
        return default
    return value if isinstance(value, type(default)) else default


def _window(payload: str) -> dict:
    return _json(payload, {})


def _tensors(value) -> list[dict]:
    if not isinstance(value, list):
        return []
    return [
        {"name": t.get("name"), "shape": t.get("shape"), "dtype": t.get("dtype")} for t in value if isinstance(t, dict)
    ]


def _device_charts(windows: list[dict], t0: float, t1: float) -> list[Chart]:
    def series(name: str, css: str, *path: str) -> Series:
        points = [(w["ts"], v) for w in windows if (v := _field(w, *path)) is not None]
        return Series(name, css, points)

    power = [(w["ts"], _field(w, "power", "watts"), w.get("power")) for w in windows]
    watts = Series(
        "watts (open: estimated)",
        "s3",
        [(ts, v) for ts, v, _ in power if v is not None],
        [bool(p.get("estimated")) for _, v, p in power if v is not None],
    )
    marks, previous = [], object()
    for w in windows:
        version = w.get("version")
        if version != previous:
            marks.append((w["ts"], f"{w.get('model') or '?'} {version}" if version is not None else "no model"))
            previous = version
    return [
        Chart(
            "Latency",
            "ms",
            t0,
            t1,
            [
                series("p50", "s1", "latency", "p50_ms"),
                series("p90", "s2", "latency", "p90_ms"),
                series("p99", "s3", "latency", "p99_ms"),
            ],
            marks,
        ),
        Chart("Throughput", "inferences/s", t0, t1, [series("throughput", "s1", "throughput_ips")], marks),
        Chart("Power", "W", t0, t1, [watts], marks),
        Chart("Temperature", "°C", t0, t1, [series("temperature", "s2", "temp_c")], marks),
    ]


def _waves(status: dict) -> list[dict]:
    """The canary and each wave: its devices (the ones it adds), their steps, and where it stands."""
    waves, start = [], 0
    for index, cut in enumerate(status["cuts"]):
        devices = status["devices"][start:cut]
        steps = [status["steps"].get(d) for d in devices]
        committed = steps.count(Step.COMMITTED)
        failed = sum(1 for s in steps if s in FAILED_STEPS)
        started = sum(1 for s in steps if s is not None)
        if index < status["wave"] or status["state"] == RolloutState.DONE:
            where = "passed"
        elif index == status["wave"]:
            where = status["state"]  # running, paused, aborted, rolled_back
        else:
            where = "waiting" if status["state"] not in ROLLOUT_ENDS else "not reached"
        waves.append(
            {
                "name": "canary" if index == 0 else f"wave {index}",
                "devices": devices,
                "size": len(devices),
                "committed": committed,
                "failed": failed,
                "working": started - committed - failed,
                "state": where,
                "steps": dict(zip(devices, steps, strict=True)),
            }
        )
        start = cut
    return waves
