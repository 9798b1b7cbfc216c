"""Accountability: deadlines fixed when an alert is raised, escalation one level per missed deadline (once, however
many workers look), per-department figures; end to end through a worker, its audit trail, webhooks and /metrics."""

from __future__ import annotations

import asyncio
import shutil
import time
import urllib.request

import orjson
import pytest
from playwright.sync_api import expect, sync_playwright
from typer.testing import CliRunner

from agents.alerts.accountability import DUE, Accountability
from agents.alerts.store import ALERT_STREAM
from agents.cli.app import cli
from agents.present.alert_view import AlertView
from models.catalog import load_sources
from settings import Settings
from state.refdata.reference import RefData, RefDataError
from tests.conftest import run, wait_until
from tests.test_alerts import TS, FlakyReceiver, _signal, alert_desk
from tests.test_console import chromium, log_in
from tests.test_worker_integration import _send

QUICK = "[[rules]]\nacknowledge_min = 1\nresolve_min = 3\n"  # everything: acknowledge in 1 min, resolve in 3


def test_escalation_once_per_missed_deadline_then_figures_per_department(redis_url, city, tmp_path):
    folder = tmp_path / "city"
    shutil.copytree(city, folder)
    (folder / "deadlines.toml").write_text(QUICK)

    async def scenario():
        r, store, manager, stations = await alert_desk(redis_url, folder)
        settings, station = Settings(redis_url=redis_url), stations[0]
        raised = time.time()
        [opened] = await manager.handle([_signal(station, TS)])
        alert = await store.get(opened.id)
        ack_by, resolve_by = (alert["deadlines"][k] for k in ("acknowledge_by", "resolve_by"))
        assert 59 <= _epoch(ack_by) - raised <= 61 and 179 <= _epoch(resolve_by) - raised <= 181

        workers = [Accountability(r, settings.alert_stream_maxlen) for _ in range(3)]
        assert await workers[0].escalate_due(raised + 30) == []  # not yet due
        [late] = await workers[0].escalate_due(raised + 61)
        esc = late["escalation"]
        assert (late["event"], esc["level"], esc["to"], esc["reasons"]) == ("escalated", 1, "county", ["acknowledge"])
        assert esc["area"] == alert["area"]["county"] and esc["department"] == "ecology_environment"
        assert await workers[0].escalate_due(raised + 62) == []  # once: the next look is at the resolve deadline
        stream = [orjson.loads(f[b"alert"]) for _, f in await r.xrange(ALERT_STREAM)]
        assert [a["event"] for a in stream] == ["opened", "escalated"]

        # acknowledged late: still escalated; three workers past the resolve deadline escalate it once more, once
        await store.transition(opened.id, "acknowledge", "li.wei")
        both = await asyncio.gather(*(w.escalate_due(raised + 181) for w in workers))
        assert sorted(len(x) for x in both) == [0, 0, 1]
        final = (await store.get(opened.id))["escalation"]
        assert (final["level"], final["to"], final["reasons"]) == (2, "city", ["acknowledge", "resolve"])
        assert await r.zcard(DUE) == 0
        history = (await store.get(opened.id))["history"]
        assert [(h["action"], h["by"]) for h in history] == [
            ("escalate", "engine"),
            ("acknowledge", "li.wei"),
            ("escalate", "engine"),
        ]
        shown = AlertView("Asia/Shanghai", load_sources(settings)).display(await store.get(opened.id), "zh-CN")
        assert shown["escalation"] == f"已升级至市级 {alert['area']['city']}：超时未确认, 超时未办结"

        figures = await workers[1].figures()
        assert figures["ecology_environment"]["overdue"] == 1 and figures["ecology_environment"]["escalated"] == 2
        await store.transition(opened.id, "dispatch", "li.wei", "patrol", "water_affairs")
        await store.transition(opened.id, "resolve", "zhang.min")
        figures = await workers[1].figures()
        assert figures["ecology_environment"]["overdue"] == 0  # closed: no longer overdue
        assert figures["ecology_environment"]["acknowledge_count"] == 1  # the routed department answered first
        assert figures["water_affairs"]["close_count"] == 1 and figures["water_affairs"]["close_median_s"] >= 0
        await r.aclose()

    run(scenario())


def test_a_deadlines_file_without_a_default_or_with_resolve_before_acknowledge_is_refused(city, tmp_path):
    folder = tmp_path / "city"
    shutil.copytree(city, folder)
    (folder / "deadlines.toml").write_text('[[rules]]\nkinds = ["fire"]\nacknowledge_min = 5\nresolve_min = 60\n')
    with pytest.raises(RefDataError, match=r"deadlines\.toml: the last rule must match every kind"):
        RefData.load_dir(folder)
    (folder / "deadlines.toml").write_text("[[rules]]\nacknowledge_min = 50\nresolve_min = 5\n")
    with pytest.raises(RefDataError, match="resolve_min is shorter than acknowledge_min"):
        RefData.load_dir(folder)


@pytest.mark.integration
def test_a_worker_escalates_audits_notifies_and_reports_per_department(stack, city, tmp_path):
    folder = tmp_path / "city"
    shutil.copytree(city, folder)
    (folder / "deadlines.toml").write_text("[[rules]]\nacknowledge_min = 0.05\nresolve_min = 0.1\n")  # 3 s, 6 s
    env = {"WARDEN_REDIS_URL": stack.settings.redis_url}
    assert CliRunner().invoke(cli, ["refdata", "load", str(folder)], env=env).exit_code == 0
    receiver = FlakyReceiver(fail_for_s=0.0)
    hooks = orjson.dumps([{"name": "ops", "url": f"http://127.0.0.1:{receiver.port}/hook"}]).decode()
    worker = stack.start_worker(WARDEN_WEBHOOKS=hooks, WARDEN_API_TOKEN="s3cret-token-for-tests")
    record = orjson.dumps({"entity": "st-late", "ts": time.time(), "pm25": 150.0})
    run(_send(stack.settings.bootstrap_servers, "telemetry.station", [(b"st-late", record, None)]))

    levels = wait_until(
        lambda: (
            [a["labels"].get("escalation") for a in receiver.accepted if a["labels"]["entity"] == "st-late"]
            if len(receiver.accepted) >= 3
            else None
        ),
        timeout=60,
        what="the alert, then its two escalations, at the webhook",
    )
    assert levels == [None, "county", "city"]
    assert "超时未确认" in receiver.accepted[1]["annotations"]["escalation"]

    with sync_playwright() as pw:  # marked in the console: in the feed, and on the alert
        browser = chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            log_in(page, f"http://127.0.0.1:{worker.port}/", "s3cret-token-for-tests")
            item = page.locator("#feed li", has_text="st-late")
            expect(item.locator(".badge")).to_have_text("已升级 市级", timeout=30_000)
            item.click()
            expect(page.locator("#detail-escalation")).to_contain_text("已升级至市级")
            expect(page.locator("#detail-escalation")).to_contain_text("超时未确认, 超时未办结")
            page.goto(f"http://127.0.0.1:{worker.port}/cockpit")  # and the leaders see it overdue
            expect(page.locator("#kpi-overdue")).to_have_text("1", timeout=30_000)
            expect(page.locator("#departments tbody tr").first.locator("td.late")).to_have_text("1")
        finally:
            browser.close()

    def get(path: str) -> bytes:
        req = urllib.request.Request(
            f"http://127.0.0.1:{worker.port}{path}", headers={"Authorization": "Bearer s3cret-token-for-tests"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read()

    trail = orjson.loads(get("/api/audit"))["entries"]
    assert [(e["action"], e["who"]) for e in trail if e["action"] == "alert.escalate"] == [
        ("alert.escalate", "engine")
    ] * 2
    figures = orjson.loads(get("/api/departments"))["departments"]["operations_centre"]
    assert (figures["overdue"], figures["escalated"]) == (1, 2)
    escalations = 'warden_department_escalations_total{department="operations_centre"} 2.0'
    metrics = wait_until(
        lambda: next((m for m in [get("/metrics").decode()] if escalations in m), None),
        timeout=20,
        what="the figures in /metrics",
    )
    assert 'warden_department_overdue_alerts{department="operations_centre"} 1.0' in metrics


def _epoch(iso_ts: str) -> float:
    from streams.event_time import epoch

    return epoch(iso_ts)
