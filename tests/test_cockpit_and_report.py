"""The leaders' cockpit in Chromium and the daily report (HTML and a PDF printed by Chromium), over real alerts."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
import pytest
from playwright.sync_api import expect, sync_playwright
from typer.testing import CliRunner

from agents.cli.app import cli
from state.refdata.reference import RefData
from tests.conftest import run, wait_until
from tests.test_alerts import TS, _signal, alert_desk
from tests.test_console import ARTIFACTS, chromium, log_in
from tests.test_worker_integration import _send

TOKEN = "cockpit-test-token-77f"


async def _raise(redis_url: str, city, kinds: dict[str, int]) -> None:
    """Raise ``n`` alerts of each kind, each kind at its own air station."""
    r, _, manager, stations = await alert_desk(redis_url, city)
    for (kind, n), station in zip(kinds.items(), stations):
        await manager.handle([_signal(station, TS + i, kind=kind) for i in range(n)])
    await r.aclose()


def test_the_daily_report_in_html_and_pdf(redis_url, city, tmp_path):
    run(_raise(redis_url, city, {"pm25_over_limit": 1, "aqi_polluted": 1}))
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    env = {"WARDEN_REDIS_URL": redis_url, "WARDEN_REPORTS_DIR": str(tmp_path)}
    done = CliRunner().invoke(cli, ["report", "--day", today], env=env)
    assert done.exit_code == 0, done.output
    html = (tmp_path / f"report-{today}.html").read_text()
    assert "2 " in done.output and "<script" not in html and "http" not in html.replace("http-equiv", "")
    for text in ("日报", "空气质量污染", "PM2.5超过限值", "重点事件", "执法建议", "生态环境局", "100.5"):
        assert text in html, text
    assert (tmp_path / f"report-{today}.pdf").read_bytes()[:5] == b"%PDF-"
    english = CliRunner().invoke(cli, ["report", "--day", today, "--language", "en", "--no-pdf"], env=env)
    assert english.exit_code == 0 and "Air polluted" in (tmp_path / f"report-{today}.html").read_text()
    bad = CliRunner().invoke(cli, ["report", "--day", "yesterday"], env=env)
    assert bad.exit_code == 2 and "not a date" in bad.output


@pytest.mark.integration
def test_the_cockpit_shows_the_city_and_advice_and_links_the_report(stack, city, tmp_path):
    env = {"WARDEN_REDIS_URL": stack.settings.redis_url, "WARDEN_REPORTS_DIR": str(tmp_path)}
    assert CliRunner().invoke(cli, ["refdata", "load", str(city)], env=env).exit_code == 0
    worker = stack.start_worker(WARDEN_API_TOKEN=TOKEN, WARDEN_REPORTS_DIR=str(tmp_path))
    ref = RefData.load_dir(city)
    stations = [s.meters[0] for s in ref.sites.values() if s.category == "air_station"][:3]
    now = time.time()
    records = [(s.encode(), orjson.dumps({"entity": s, "ts": now, "pm25": 120.0}), None) for s in stations]
    run(_send(stack.settings.bootstrap_servers, "telemetry.station", records))
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    wait_until(lambda: _alerts(stack) == 3, what="three alerts stored")
    assert CliRunner().invoke(cli, ["report", "--day", today, "--no-pdf"], env=env).exit_code == 0
    with sync_playwright() as pw:
        browser = chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            log_in(page, f"http://127.0.0.1:{worker.port}/", TOKEN)
            expect(page.locator("#feed li")).to_have_count(3, timeout=60_000)
            page.goto(f"http://127.0.0.1:{worker.port}/cockpit")
            expect(page.locator("#kpi-open")).to_have_text("3", timeout=30_000)
            expect(page.locator("#kpi-new-today")).to_have_text("3")
            expect(page.locator("#kpi-close-time")).to_have_text("-")  # nothing closed yet
            expect(page.locator("#trends .trend")).to_have_count(1)
            expect(page.locator("#trends .trend .name")).to_contain_text("PM2.5超过限值")
            expect(page.locator("#map .heat")).to_have_count(3)
            expect(page.locator("#advice-places li").first).to_contain_text("→")
            expect(page.locator("#map .place").first).to_be_attached()
            expect(page.locator("#departments tbody tr").first).to_contain_text("运行管理中心")
            link = page.locator("#report-links a")
            expect(link).to_have_attribute("href", f"/console/reports/report-{today}.html")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "cockpit.png"))
            report = page.request.get(f"http://127.0.0.1:{worker.port}/console/reports/report-{today}.html")
            assert report.ok and "PM2.5超过限值" in report.text()
            assert page.request.get(f"http://127.0.0.1:{worker.port}/console/reports/..%2Fsecrets").status == 404
        finally:
            browser.close()


def _alerts(stack) -> int:
    return sum(1 for k in stack.redis.scan_iter("warden:alert:*") if k.count(b":") == 2)
