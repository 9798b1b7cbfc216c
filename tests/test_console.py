"""The web console in headless Chromium (Debian's, driven by Playwright) against a live worker."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from urllib.error import HTTPError
from urllib.request import urlopen
from zoneinfo import ZoneInfo

import orjson
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import ROOT, run
from tests.test_worker_integration import _send

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "console-test-token-4c1d"
HOSTILE = "<script>window.__pwned = 1</script><img src=x onerror=window.__pwned=2>"


def _warden(stack, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", *args],
        cwd=ROOT,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def chromium(pw):
    """Debian's headless Chromium, offline."""
    return pw.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )


def log_in(page, url: str, token: str, name: str = "Officer Li") -> None:
    """Open the console at ``url`` and log in."""
    wait_ready(url.rstrip("/"))
    page.goto(url)
    page.fill("#login-name", name)
    page.fill("#login-token", token)
    page.click("#login-form button")


def wait_ready(base: str) -> None:
    """Until the worker has started (its web server answers before its Redis client is up)."""
    deadline = time.monotonic() + 90
    while True:
        try:
            urlopen(f"{base}/console/session", timeout=2)
        except HTTPError as exc:
            if exc.code == 401:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not start")
        time.sleep(0.3)


def _record(entity: str, pm25: float, ts: float | None = None) -> bytes:
    return orjson.dumps({"entity": entity, "ts": time.time() if ts is None else ts, "pm25": pm25})


def _send_now(stack, records: list[tuple[str, bytes]]) -> None:
    """Send (key, value) records to the test station's topic from a thread of its own (Playwright's sync API
    holds this thread's event loop)."""
    messages = [(key.encode(), value, None) for key, value in records]
    with ThreadPoolExecutor(1) as pool:
        pool.submit(run, _send(stack.settings.bootstrap_servers, "telemetry.station", messages)).result()


def test_console_login_live_alert_lifecycle_and_escaping(stack, tmp_path):
    city = tmp_path / "city"
    _warden(stack, "refdata", "city", str(city), "--entities", "300")
    _warden(stack, "refdata", "load", str(city))
    worker = stack.start_worker(WARDEN_API_TOKEN=TOKEN)
    url = f"http://127.0.0.1:{worker.port}/"
    station = "air-0000000"  # a registered air station: its alerts have a place on the map
    with sync_playwright() as pw:
        browser = chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.on("dialog", lambda d: d.dismiss())
            wait_ready(url.rstrip("/"))
            page.goto(url)
            csp = page.request.get(url).headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp

            # log in: a wrong token is refused, the right one opens the console, in Chinese and the city's time
            page.fill("#login-name", "Officer Li")
            page.fill("#login-token", "not-the-token")
            page.click("#login-form button")
            expect(page.locator("#login-error")).to_have_text("wrong token", timeout=30_000)
            page.fill("#login-token", TOKEN)
            page.click("#login-form button")
            expect(page.locator("#console")).to_be_visible()
            expect(page.locator("#feed-state")).to_have_text("实时", timeout=30_000)
            expect(page.locator("#clock")).to_contain_text("北京时间")
            expect(page.locator("#clock")).to_contain_text("(UTC+08:00)")
            expect(page.locator("#map .site, #map .site-cluster").first).to_be_attached()
            expect(page.locator("#map .area-label").first).to_be_attached()  # towns are named on the map
            expect(page.locator(".legend")).to_contain_text("危化品车辆")
            page.click("#zoom-in")
            assert page.locator("#map").get_attribute("viewBox") != "0 0 1000 800"
            page.click("#zoom-reset")
            assert page.locator("#map").get_attribute("viewBox") == "0 0 1000 800"

            # a new alert arrives live, titled in the staff's language; a record's hostile text shows as text
            sent_at = time.time()
            _send_now(stack, [(station, _record(station, 180.0, sent_at)), (HOSTILE, _record(HOSTILE, 190.0))])
            title = "PM2.5超过限值"
            item = page.locator("#feed li", has_text=f"{title} - {station}")
            expect(item).to_be_visible(timeout=60_000)
            hostile = page.locator("#feed li", has_text=HOSTILE)
            expect(hostile).to_be_visible(timeout=60_000)
            assert page.evaluate("window.__pwned") is None
            assert page.locator("#feed script, #feed img").count() == 0
            expect(page.locator("#map .alert")).to_have_count(1)  # the registered station has a place
            expect(page.locator("#count-open")).to_have_text("2", timeout=10_000)

            # open it: evidence with units, times local, dispatch preselects the routed department
            item.click()
            expect(page.locator("#detail-title")).to_have_text(f"{title}: {station}")
            expect(page.locator("#detail-evidence")).to_contain_text("180 µg/m³")
            local = datetime.fromtimestamp(sent_at, ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")
            expect(page.locator("#detail-fields")).to_contain_text(local)
            alert_id = item.get_attribute("data-id")
            routed = page.request.get(f"{url}api/alerts/{alert_id}").json()["departments"]
            assert routed and page.locator("#dispatch-to").input_value() == routed[0]

            # acknowledge: the step is then disabled, the reason on hover; resolve
            page.click("button[data-action=acknowledge]")
            expect(page.locator("#detail-status")).to_contain_text("已确认", timeout=10_000)
            acknowledge = page.locator("button[data-action=acknowledge]")
            expect(acknowledge).to_be_disabled()
            expect(acknowledge).to_have_attribute("title", "当前状态为“已确认”，不能确认：需处于待处理")
            page.click("button[data-action=resolve]")
            expect(page.locator("#detail-status")).to_contain_text("已办结", timeout=10_000)
            expect(page.locator("#detail-history li")).to_have_count(2)
            expect(page.locator("#detail-history li").first).to_contain_text("Officer Li")
            expect(page.locator("button[data-action=resolve]")).to_be_disabled()

            # a page behind the alert (another officer's step it has not seen yet) is refused, and the refusal
            # stays while the alert changes under it: here a new reading re-opens it, which the panel shows
            page.evaluate("document.querySelector('button[data-action=resolve]').disabled = false")
            page.click("button[data-action=resolve]")
            expect(page.locator("#action-error")).to_contain_text("cannot resolve", timeout=10_000)
            _send_now(stack, [(station, _record(station, 240.0, sent_at + 3700))])  # past the rule's hour
            expect(page.locator("#detail-status")).to_contain_text("待处理", timeout=60_000)
            expect(page.locator("#detail-reopened")).to_be_visible()
            expect(page.locator("#reopened-evidence")).to_contain_text("240 µg/m³")
            expect(page.locator("#detail-history li").last).to_contain_text("系统")
            expect(page.locator("#action-refusal")).to_be_visible()
            expect(page.locator("#action-error")).to_contain_text("cannot resolve")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "console-alert.png"), full_page=True)
            page.click("#action-dismiss")
            expect(page.locator("#action-refusal")).to_be_hidden()

            # English, chosen by the person, is remembered for their next login
            page.click("#language")
            expect(page.locator("#feed li", has_text=f"PM2.5 over its limit - {station}")).to_be_visible(timeout=30_000)
            expect(page.locator("#clock")).to_contain_text("local time")
            page.click("#logout")
            page.fill("#login-name", "Officer Li")
            page.fill("#login-token", TOKEN)
            page.click("#login-form button")
            expect(page.locator("#feed-state")).to_have_text("live", timeout=30_000)

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)
        finally:
            browser.close()


def test_console_refuses_without_session_and_writes_without_csrf(stack):
    worker = stack.start_worker(WARDEN_API_TOKEN=TOKEN)
    base = f"http://127.0.0.1:{worker.port}"
    with sync_playwright() as pw:
        ctx = pw.request.new_context(base_url=base)
        try:
            wait_ready(base)
            for path in ("/console/map", "/console/status", "/console/events", "/api/alerts"):
                assert ctx.get(path).status == 401, path
            login = ctx.post("/console/login", data={"name": "a", "token": TOKEN})
            assert login.ok and "httponly" in login.headers["set-cookie"].lower()
            assert ctx.get("/api/alerts").ok  # the cookie reads
            refused = ctx.post("/api/alerts/abc/acknowledge", data={"by": "a"})
            assert refused.status == 403 and "CSRF" in refused.json()["error"]  # but cannot write alone
            ok = ctx.post(
                "/api/alerts/abc/acknowledge", data={"by": "a"}, headers={"X-CSRF-Token": login.json()["csrf"]}
            )
            assert ok.status == 404  # with the token it gets through

            # guessing: after five wrong tokens under one name, that name's further guesses from the address are
            # refused for a while; another name's are not, and a right token still logs in (behind a shared
            # proxy, one person's typos must not lock out every operator); 25 under any names lock the address
            def login(name: str, token: str) -> int:
                return ctx.post("/console/login", data={"name": name, "token": token}).status

            assert [login("Officer X", f"guess-{i}") for i in range(5)] == [401] * 5
            locked = ctx.post("/console/login", data={"name": "officer x", "token": "guess-5"})
            assert locked.status == 429 and 0 < int(locked.headers["retry-after"]) <= 900
            assert login("Officer Y", "typo") == 401
            assert login("a", TOKEN) == 200
            assert [login(f"n{i}", "spray") for i in range(19)] == [401] * 19  # 25 wrong from this address
            assert login("Officer Z", "typo") == 429 and login("Officer Z", TOKEN) == 200
        finally:
            ctx.dispose()


def test_the_map_shows_vehicles_from_every_worker(stack):
    """Two workers share the GPS partitions; the console served by one shows the vehicles the other holds."""
    workers = [stack.start_worker(WARDEN_API_TOKEN=TOKEN) for _ in range(2)]
    base = f"http://127.0.0.1:{workers[0].port}"
    vehicles = [f"truck-{i}" for i in range(12)]
    with sync_playwright() as pw:
        ctx = pw.request.new_context(base_url=base)
        try:
            wait_ready(base)
            wait_ready(f"http://127.0.0.1:{workers[1].port}")
            assert ctx.post("/console/login", data={"name": "a", "token": TOKEN}).ok
            shown: set[str] = set()
            deadline = time.monotonic() + 120
            while shown != set(vehicles) and time.monotonic() < deadline:  # until both own partitions
                fixes = [
                    (
                        v.encode(),
                        orjson.dumps(
                            {"entity": v, "ts": time.time(), "lat": 31.2 + i / 100, "lon": 120.5, "speed": 30.0}
                        ),
                        None,
                    )
                    for i, v in enumerate(vehicles)
                ]
                with ThreadPoolExecutor(1) as pool:
                    pool.submit(run, _send(stack.settings.bootstrap_servers, "telemetry.gps", fixes)).result()
                time.sleep(3)
                shown = {v["entity"] for v in ctx.get("/console/status").json()["vehicles"]}
            assert shown == set(vehicles)
            owners = [orjson.loads(stack.redis.get(k)) for k in stack.redis.scan_iter("warden:positions:*")]
            assert len(owners) == 2 and all(owners), "both workers hold some of the vehicles"
        finally:
            ctx.dispose()


def test_the_live_feed_holds_on_a_quiet_stream_and_resumes_from_the_last_event(stack):
    """A quiet stream gets keep-alives and stays open past the Redis reply timeout (the feed dropped every 5 s
    when its blocking read outlasted it); a reconnect with Last-Event-ID gets only what came after."""
    import asyncio

    import aiohttp

    worker = stack.start_worker(WARDEN_API_TOKEN=TOKEN, WARDEN_REDIS_TIMEOUT_S="4")
    base = f"http://127.0.0.1:{worker.port}"
    wait_ready(base)

    async def scenario() -> tuple[list[str], list[str]]:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # (an IP address)
            login = await http.post(f"{base}/console/login", json={"name": "a", "token": TOKEN})
            assert login.status == 200
            lines: list[str] = []
            async with http.get(f"{base}/console/events") as feed:
                assert feed.status == 200
                deadline = time.monotonic() + 10  # beyond twice the reply timeout, nothing to say
                while time.monotonic() < deadline:
                    line = await asyncio.wait_for(feed.content.readline(), 10)
                    assert line, f"the feed ended on a quiet stream after {lines}"
                    lines.append(line.decode().strip())
                await _send(
                    stack.settings.bootstrap_servers, "telemetry.station", [(b"st-9", _record("st-9", 300.0), None)]
                )
                while not any(x.startswith("data:") for x in lines):
                    lines.append((await asyncio.wait_for(feed.content.readline(), 60)).decode().strip())
            last = [x for x in lines if x.startswith("id:")][-1].split(":", 1)[1].strip()
            async with http.get(f"{base}/console/events", headers={"Last-Event-ID": last}) as again:
                resumed = [(await asyncio.wait_for(again.content.readline(), 10)).decode().strip() for _ in range(2)]
            return lines, resumed

    lines, resumed = asyncio.run(scenario())
    assert lines.count(": keep-alive") >= 3 and "st-9" in next(x for x in lines if x.startswith("data:"))
    assert resumed == [": keep-alive", ""]  # nothing again from before the id it came back with
    assert "traceback" not in worker.log.read_text().lower()


def test_without_reference_data_the_map_says_how_to_load_it(stack):
    worker = stack.start_worker(WARDEN_API_TOKEN=TOKEN)
    with sync_playwright() as pw:
        browser = chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            log_in(page, f"http://127.0.0.1:{worker.port}/", TOKEN)
            expect(page.locator("#map-message")).to_contain_text("warden refdata load", timeout=30_000)
            assert page.locator("#map path").count() == 0
            expect(page.locator(".legend")).to_be_hidden()  # nothing drawn, nothing to explain
        finally:
            browser.close()


def test_the_feed_holds_a_quiet_minute_at_wall_and_laptop_sizes(stack):
    """1920x1080 and 1280x720, a minute with nothing to say: the feed never leaves "live", and the smaller
    screen still shows the feed, the map and an alert's panel without scrolling sideways."""
    worker = stack.start_worker(WARDEN_API_TOKEN=TOKEN)
    url = f"http://127.0.0.1:{worker.port}/"
    with sync_playwright() as pw:
        browser = chromium(pw)
        try:
            pages = [
                browser.new_page(viewport=size)
                for size in ({"width": 1920, "height": 1080}, {"width": 1280, "height": 720})
            ]
            for page in pages:
                log_in(page, url, TOKEN)
                expect(page.locator("#feed-state")).to_have_text("实时", timeout=30_000)
            seen = set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                seen |= {page.locator("#feed-state").text_content() for page in pages}
                time.sleep(0.5)
            assert seen == {"实时"}, seen
            _send_now(stack, [("st-quiet", _record("st-quiet", 200.0))])
            small = pages[1]
            small.locator("#feed li").first.click(timeout=60_000)
            for part in ("#feed-panel", "#map", "#detail-title", "button[data-action=acknowledge]"):
                expect(small.locator(part)).to_be_visible()
            assert small.evaluate("document.scrollingElement.scrollWidth") <= 1280
            ARTIFACTS.mkdir(exist_ok=True)
            small.screenshot(path=str(ARTIFACTS / "console-1280x720.png"))
        finally:
            browser.close()
    assert "traceback" not in worker.log.read_text().lower()
