"""The fleet console (issue 19) against a manager fed by real agents over the embedded broker:
the login, the four pages over HTTP (with their 400/404 pages), HTML injection from the network
shown as text, and the same pages in a real headless Chromium (Debian's package, driven by
Selenium): live updates, and the abort button stopping a running rollout.

``EDGEKIT_CONSOLE_SCREENSHOTS=1`` makes the browser tests save docs/console-*.png."""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edgekit import package, protocol
from edgekit.fleet.api import serve_api
from edgekit.fleet.client import FleetClient
from edgekit.fleet.manager import FleetManager
from edgekit.fleet.packages import PackageStore
from tests.fleet.test_api import LATENCY, TOKEN, _package, _upload, manager_with_agents
from tests.fleet.test_fleet_mqtt import wait_for

DOCS = Path(__file__).resolve().parents[2] / "docs"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
EVIL = "<img src=x onerror=window.pwned=1>"  # a device id is anything without / + #
EVIL_REASON = "<script>window.pwned=2</script> health check failed"


@dataclass
class Console:
    manager: FleetManager
    client: FleetClient
    agents: list
    url: str
    broker_port: int

    def http(self, path: str, cookie: str | None = None, data: bytes | None = None, headers: dict | None = None):
        """(status, headers, body) of one request, redirects not followed."""
        request = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        if cookie:
            request.add_header("Cookie", cookie)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=30) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read().decode()

    def login(self) -> str:
        status, headers, _ = self.http("/console/login", data=urllib.parse.urlencode({"token": TOKEN}).encode())
        assert status == 303
        return headers["Set-Cookie"].split(";")[0]

    def publish(self, device: str, channel: str, *messages: dict, **fields) -> None:
        """Messages as a device sends them, from a raw MQTT client (what an attacker's device can send)."""
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", self.broker_port)
        client.loop_start()
        try:
            for message in messages or (fields,):
                payload = protocol.encode(channel, **message)
                client.publish(protocol.topic("f1", device, channel), payload, qos=1).wait_for_publish(10)
        finally:
            client.loop_stop()
            client.disconnect()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def console(tmp_path, keys, command_key, server):
    from edgekit.broker import Broker

    broker = Broker(port=0).start()
    try:
        with manager_with_agents(tmp_path, broker, command_key, server) as (manager, client, agents, url):
            yield Console(manager, client, agents, url, broker.port)
    finally:
        broker.stop()


def _window(p90_ms: float, **extra) -> dict:
    return {
        "count": 100,
        "errors": 0,
        "window_s": 0.001,
        "latency": LATENCY(p90_ms),
        "throughput_ips": 40.0,
        "power": {"watts": 2.7, "estimated": True, "source": "estimate"},
        "temp_c": 51.5,
        **extra,
    }


def _stored_windows(console: Console, device: str) -> int:
    return len(console.manager.store.query("SELECT 1 FROM telemetry WHERE device=?", (device,)))


def _rows(body: str) -> list[str]:
    """The device ids of the fleet table, in order."""
    return [part.split('"', 1)[0] for part in body.split('<tr data-device="')[1:]]


# --- HTTP ----------------------------------------------------------------------------------------
def test_reading_needs_the_login(console):
    status, headers, _ = console.http("/console/devices/dev00")
    assert status == 303 and headers["Location"] == "/console/login?next=%2Fconsole%2Fdevices%2Fdev00"
    assert console.http("/")[1]["Location"].startswith("/console/login")
    assert console.http("/console", cookie="edgekit_console=forged")[0] == 303
    status, _, body = console.http("/console/login", data=b"token=wrong&next=%2Fconsole")
    assert status == 401 and "not the fleet token" in body
    form = urllib.parse.urlencode({"token": TOKEN, "next": "//evil.example/console"}).encode()
    status, headers, _ = console.http("/console/login", data=form)
    assert status == 303 and headers["Location"] == "/console"  # never off the manager
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    session = cookie.split(";")[0]
    assert console.http("/", cookie=session)[1]["Location"] == "/console"
    # the buttons' API calls: the cookie counts only with the console's header (no cross-site form sends it)
    assert console.http("/api/v1/rollouts/nope/pause", cookie=session, data=b"")[0] == 401
    control = console.http("/api/v1/rollouts/nope/pause", session, b"", {"X-Edgekit-Console": "1"})
    assert control[0] == 400 and "no rollout 'nope'" in control[2]  # past the token check
    status, headers, _ = console.http("/console/logout", cookie=session, data=b"")
    assert status == 303 and "Max-Age=0" in headers["Set-Cookie"]


def test_fleet_page_lists_the_agents_with_their_latest_window(console):
    cookie = console.login()
    console.agents[0].telemetry(window=_window(3.0))
    wait_for(lambda: _stored_windows(console, "dev00") == 1, what="dev00's window stored")
    status, headers, body = console.http("/console", cookie)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "nonce-" in headers["Content-Security-Policy"]
    assert _rows(body) == ["dev00", "dev01", "dev02", "dev03"]
    assert '<b id="count-total">4</b>' in body and '<b class="ok" id="count-online">4</b>' in body
    dev00 = body.split('<tr data-device="dev00">')[1].split("</tr>")[0]
    assert ">3.00<" in dev00 and ">40.0<" in dev00 and ">51.5<" in dev00
    assert 'class="est"' in dev00 and "2.70" in dev00  # the estimate is marked
    assert _rows(console.http("/console?tag=cameras", cookie)[2]) == ["dev00", "dev02"]
    console.agents[3].stop()
    wait_for(lambda: console.client.devices("doors")[1]["state"] == "offline", what="dev03 offline")
    assert _rows(console.http("/console?state=offline", cookie)[2]) == ["dev03"]
    assert _rows(console.http("/console?state=online&tag=doors", cookie)[2]) == ["dev01"]
    assert _rows(console.http("/console?model=fc", cookie)[2]) == []
    for bad in ("/console?state=sleeping", "/console?colour=red"):
        status, _, body = console.http(bad, cookie)
        assert status == 400 and "Traceback" not in body, bad
    status, _, body = console.http("/console/nothing-here", cookie)
    assert status == 404 and "no page" in body


def test_device_page_charts_the_windows_and_lists_deployments(tmp_path, console, keys, models):
    cookie = console.login()
    for p90 in (2.0, 2.5, 3.0):
        console.agents[1].telemetry(window=_window(p90))
    wait_for(lambda: _stored_windows(console, "dev01") == 3, what="dev01's windows stored")
    status, _, body = console.http("/console/devices/dev01?window=15m", cookie)
    assert status == 200
    assert body.count('data-points="9"') == 1  # latency: p50, p90, p99 of three windows
    assert body.count('data-points="3"') == 3  # throughput, power, temperature
    assert body.count('class="s3 hollow"') == 3  # estimated watts drawn open
    assert "<polyline" in body and "<script src" not in body
    v1 = _package(tmp_path, models[0], keys[0], "1")
    _upload(console.client, v1, keys[0])
    console.client.deploy(v1.sha256, ["id:dev01"], canary=0.0, waves=[1.0], rollout_id="only-dev01")
    wait_for(lambda: console.client.rollout("only-dev01")["state"] == "done", what="dev01 on v1")
    console.agents[1].telemetry(window=_window(2.0))
    wait_for(lambda: _stored_windows(console, "dev01") == 4, what="a window on v1")
    body = console.http("/console/devices/dev01", cookie)[2]
    assert '<a href="/console/rollouts/only-dev01">only-dev01</a>' in body and "committed" in body
    assert 'class="mark-label"' in body and "fc 1</text>" in body  # the version marked on the time axis
    assert console.http("/console/devices/dev99", cookie)[0] == 404
    status, _, body = console.http("/console/devices/dev01?window=forever", cookie)
    assert status == 400 and "window must be one of" in body


def test_rollout_and_packages_pages_say_what_failed_and_who_runs_what(tmp_path, console, keys, models):
    cookie = console.login()
    v1 = _package(tmp_path, models[0], keys[0], "1")
    _upload(console.client, v1, keys[0])
    console.client.deploy(v1.sha256, ["all"], canary=0.0, waves=[1.0], rollout_id="base")
    wait_for(lambda: console.client.rollout("base")["state"] == "done", what="v1 everywhere")
    broken = tmp_path / "nan.tflite"
    broken.write_bytes(models[1].read_bytes()[:300])
    bad = package.build(broken, tmp_path / "bad.tar", name="fc", version="2", signing_key=keys[0], validate=False)
    _upload(console.client, bad, keys[0])
    console.client.deploy(bad.sha256, ["all"], canary=0.25, waves=[1.0], rollout_id="bad")
    wait_for(lambda: console.client.rollout("bad")["state"] == "aborted", what="the canary failure stops it")
    reason = console.client.rollout("bad")["failures"]["dev00"]
    status, _, body = console.http("/console/rollouts/bad", cookie)
    assert status == 200
    assert body.count('<tr class="wave"') == 2 and ">canary<" in body and ">wave 1<" in body
    assert "health check failed" in reason and reason.split(":")[0] in body
    assert body.count('<tr class="event">') == len(console.client.events("bad"))
    assert 'data-action="abort"' in body and "disabled>abort</button>" in body  # aborted already
    assert '<a href="/console/rollouts/bad">bad</a>' in console.http("/console/rollouts", cookie)[2]
    assert console.http("/console/rollouts/nope", cookie)[0] == 404
    body = console.http("/console/packages", cookie)[2]
    rows = body.split('<tr class="package">')[1:]
    assert len(rows) == 2 and "<td>xz" in rows[0]
    assert "4 devices:" in rows[0] and "0 devices" in rows[1]  # v1 on all four; v2 rolled back
    io = v1.manifest["io"]["inputs"][0]
    assert f"{io['name']} {io['dtype']}{io['shape']}" in body


def _rollout_to(console: Console, device: str) -> None:
    """A rollout "r-evil" to one device (a package nobody serves: it only has to exist)."""
    deploy = {"deployment": "r-evil", "package": "fc-9.tar", "sha256": "0" * 64, "url": "http://127.0.0.1:9/x.tar"}
    console.manager.start_rollout("f1", {**deploy, "size": 1, "name": "fc", "version": "9"}, [device])


def test_values_from_the_network_are_shown_as_text(console):
    cookie = console.login()
    console.publish(EVIL, "status", state="online", seq=1, ts=time.time(), tags=["<b>bold</b>"], version='1"><i>')
    console.publish("dev00", "telemetry", seq=1, ts=time.time(), window_s=1.0, count=1, temp_c="<script>x</script>")
    _rollout_to(console, EVIL)
    console.publish(
        EVIL, "progress", deployment="r-evil", step="failed", ts=time.time(), details={"reason": EVIL_REASON}
    )
    wait_for(lambda: EVIL in console.client.rollout("r-evil")["failures"], what="the failure stored")
    pages = [
        console.http("/console", cookie)[2],
        console.http("/console/devices/" + urllib.parse.quote(EVIL, safe=""), cookie)[2],
        console.http("/console/rollouts/r-evil", cookie)[2],
    ]
    for body in pages:
        assert "<img src=x" not in body and "<script>window" not in body and "<b>bold" not in body
    assert "&lt;img src=x onerror=window.pwned=1&gt;" in pages[0] and "&lt;b&gt;bold&lt;/b&gt;" in pages[0]
    assert "1&#34;&gt;&lt;i&gt;" in pages[1]
    assert "&lt;script&gt;window.pwned=2&lt;/script&gt;" in pages[2]


def test_a_thousand_devices(tmp_path):
    """The fleet page of 1,000 registered devices, each with a window every 10 s for the last 5
    minutes. The time is printed (run with -s), not asserted: CI machines vary."""
    manager = FleetManager(tmp_path / "fleet.sqlite")  # never started: its store is all the page reads
    now = time.time()
    batch = []
    for i in range(1000):
        device = f"pi{i:04d}"
        status = {"state": "online", "seq": 1, "ts": now, "tags": ["cameras"], "model": "fc", "version": "1"}
        batch.append(("default", device, "status", status))
        for k in range(30):
            batch.append(("default", device, "telemetry", {"seq": k, "ts": now - 295 + 10 * k, **_window(2.0)}))
    manager.store.write(batch)
    httpd, _ = serve_api(manager, PackageStore(tmp_path / "store"), TOKEN)
    try:
        console = Console(manager, None, [], f"http://127.0.0.1:{httpd.server_address[1]}", 0)
        cookie = console.login()
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            status, _, body = console.http("/console", cookie)
            timings.append(time.perf_counter() - start)
        assert status == 200 and len(_rows(body)) == 1000 and body.count(">2.00<") == 1000
        print(f"\nfleet page, 1,000 devices: {min(timings) * 1000:.0f} ms best of 3, {len(body) / 1e3:.0f} kB")
    finally:
        httpd.shutdown()
        manager.store.close()


# --- a real browser ------------------------------------------------------------------------------
@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no chromium/chromedriver here (apt-get install chromium chromium-driver; scripts/dev test does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1360,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _browser_login(driver, console: Console, path: str) -> None:
    driver.get(console.url + path)
    assert urllib.parse.urlsplit(driver.current_url).path == "/console/login"  # sent to the login
    _click(driver, "#token", keys=TOKEN)
    _click(driver, "form.login button")
    _until(driver, lambda d: urllib.parse.urlsplit(d.current_url).path == path, "back on " + path)


def _until(driver, condition, what: str, timeout: float = 60.0):
    """Wait for ``condition``; the live updates replace elements, so a stale one is a retry."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (StaleElementReferenceException, NoSuchElementException)
    wait = WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=ignored)
    return wait.until(condition, f"timed out waiting for {what}")


def _click(driver, css: str, keys: str | None = None) -> None:
    from selenium.webdriver.common.by import By

    def act(d) -> bool:
        element = d.find_element(By.CSS_SELECTOR, css)
        element.send_keys(keys) if keys is not None else element.click()
        return True

    _until(driver, act, f"{css} to act on")


def _read(driver, css: str, attribute: str | None = None) -> list[str]:
    """Texts (or an attribute) of the elements matching ``css``, read at once in the page."""
    script = (
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(e => arguments[1] ? e.getAttribute(arguments[1]) : e.textContent.trim())"
    )
    return driver.execute_script(script, css, attribute)


def _screenshot(driver, name: str) -> None:
    """docs/console-NAME.png, when EDGEKIT_CONSOLE_SCREENSHOTS is set: the whole page, as laid out."""
    if not os.environ.get("EDGEKIT_CONSOLE_SCREENSHOTS"):
        return
    height = driver.execute_script("return document.documentElement.scrollHeight")
    metrics = {"width": 1360, "height": min(height, 2400), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.save_screenshot(str(DOCS / f"console-{name}.png"))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _history(console: Console, device: str, versions: list[tuple[str, str]]) -> None:
    """The last hour of windows of a device (one a minute), over MQTT as an agent sends them: the
    device chart has a shape to show. ``versions``: (model, version) in the first and second half."""
    now, messages = time.time(), []
    for k in range(60):
        model, version = versions[0] if k < 30 else versions[-1]
        wave = 1 + 0.3 * ((k % 12) / 12)
        fields = _window(2.0 * wave + (0.8 if k >= 30 else 0), temp_c=48 + k / 10, throughput_ips=45 / wave)
        fields["window_s"] = 60.0
        ts = now - 3540 + 60 * k
        messages.append({"seq": 1000 + k, "ts": ts, "model": model, "version": version, **fields})
    console.publish(device, "telemetry", *messages)


def test_browser_fleet_device_and_packages(tmp_path, console, browser, keys, models):

    v1 = _package(tmp_path, models[0], keys[0], "1")
    _upload(console.client, v1, keys[0])
    console.client.deploy(v1.sha256, ["all"], canary=0.25, waves=[1.0], rollout_id="fc-1")
    wait_for(lambda: console.client.rollout("fc-1")["state"] == "done", what="v1 everywhere")
    _history(console, "dev02", [("fc", "0"), ("fc", "1")])
    for i, agent in enumerate(console.agents):
        agent.telemetry(window=_window(2.0 + i / 4))
    wait_for(lambda: _stored_windows(console, "dev03") == 1, what="the agents' windows stored")
    _browser_login(browser, console, "/console")
    assert _read(browser, "tr[data-device]", "data-device") == ["dev00", "dev01", "dev02", "dev03"]
    assert _read(browser, "#count-online") == ["4"]
    _screenshot(browser, "fleet")
    console.agents[3].stop()  # live: the page follows without a reload
    _until(browser, lambda d: _read(d, "#count-offline") == ["1"], "dev03 shown offline")

    browser.get(console.url + "/console/devices/dev02")
    latency = "figure:first-of-type svg"
    assert _read(browser, latency, "data-points") == [str(3 * 61)]  # an hour of history, the agent's window
    assert len(_read(browser, latency + " circle")) == 3 * 61
    assert _read(browser, latency + " text.mark-label") == ["fc 0", "fc 1"]
    _screenshot(browser, "device")

    _click(browser, "header a[href='/console/packages']")
    _until(browser, lambda d: _read(d, "tr.package"), "the package row")
    [row] = _read(browser, "tr.package")
    assert "fc" in row and "xz" in row and "4 devices" in row
    _screenshot(browser, "packages")


def test_browser_rollout_live_and_abort(tmp_path, console, browser, keys, models):

    v1 = _package(tmp_path, models[0], keys[0], "1")
    _upload(console.client, v1, keys[0])
    gates = {"max_error_rate": 0.05, "telemetry_windows": 1}
    console.client.deploy(v1.sha256, ["all"], canary=0.25, waves=[1.0], gates=gates, rollout_id="gated")
    wait_for(lambda: console.client.rollout("gated")["steps"].get("dev00") == "committed", what="canary committed")
    _browser_login(browser, console, "/console/rollouts/gated")
    assert _read(browser, "tr.wave td:first-child") == ["canary", "wave 1"]
    assert _read(browser, "tr.verdict") == []
    console.agents[0].telemetry(window=_window(2.0))  # the canary's evidence: no errors
    [verdict] = _until(browser, lambda d: _read(d, "tr.verdict"), "the verdict, live")
    assert "wave 1 passed" in verdict and "error_rate 0.000" in verdict
    _until(browser, lambda d: _read(d, "tr.wave td:nth-child(2)")[0] == "passed", "the canary passed")
    wait_for(
        lambda: list(console.client.rollout("gated")["steps"].values()) == ["committed"] * 4,
        what="wave 1 committed everywhere",
    )
    _until(browser, lambda d: _read(d, "tr.wave td:nth-child(5)") == ["1", "3"], "wave 1 committed, live")
    _screenshot(browser, "rollout")
    assert console.client.rollout("gated")["state"] == "running"  # wave 1 waits for its telemetry
    _click(browser, 'button[data-action="abort"]')
    _until(browser, _alert, "the confirmation").accept()
    _until(browser, lambda d: _read(d, "#rollout-state-name") == ["aborted"], "aborted, live")
    assert console.client.rollout("gated")["state"] == "aborted"
    assert _read(browser, "#action-result") == ["abort: rollout is aborted"]
    events = [e["kind"] for e in console.client.events("gated")]
    assert events[-1] == "aborted" and "gate" in events


def _alert(driver):
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return False


def test_browser_shows_injection_as_text(console, browser):

    console.publish(EVIL, "status", state="online", seq=1, ts=time.time(), tags=["<b>bold</b>"], version="1")
    _rollout_to(console, EVIL)
    console.publish(
        EVIL, "progress", deployment="r-evil", step="failed", ts=time.time(), details={"reason": EVIL_REASON}
    )
    wait_for(lambda: EVIL in console.client.rollout("r-evil")["failures"], what="the failure stored")
    _browser_login(browser, console, "/console")
    assert EVIL in _read(browser, "tr[data-device]", "data-device")
    assert "<b>bold</b>" in _read(browser, "span.tag")
    no_injection = (
        "return window.pwned === undefined && !document.querySelector('img')"
        " && ![...document.querySelectorAll('b')].some(b => b.textContent === 'bold')"
    )
    assert browser.execute_script(no_injection)
    _click(browser, f"a[href='/console/devices/{urllib.parse.quote(EVIL, safe='')}']")
    _until(browser, lambda d: _read(d, "h1") == [EVIL], "the device page")
    assert _read(browser, "td.reason") == [EVIL_REASON]
    browser.get(console.url + "/console/rollouts/r-evil")
    assert _read(browser, "#failures td.reason") == [EVIL_REASON]
    assert browser.execute_script(no_injection)
