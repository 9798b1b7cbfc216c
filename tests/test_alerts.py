"""Alerts: merging, routing, lifecycle and reference data (embedded Redis; the worker tests use the broker too)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import web
from cases import instant_signal
from typer.testing import CliRunner

from agents.alerts.manager import AlertManager
from agents.alerts.store import ALERT_STREAM, LABEL_STREAM, AlertStore
from agents.cli.app import cli
from agents.embedded.ports import free_port
from agents.present.alert_view import AlertView
from models.catalog import load_sources
from models.incidents import QuietPeriods
from models.lifecycle import TransitionError
from models.routing import route
from models.signal import Signal
from settings import Settings
from state.refdata import store as refstore
from state.refdata.reference import RefData, RefDataError
from state.refdata.store import RefCache
from tests.conftest import run, wait_until
from tests.test_worker_integration import _read_topic, _send

TS = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _signal(entity: str, t: float, score: float = 0.5, kind: str = "pm25_over_limit", source: str = "air") -> Signal:
    return instant_signal(source, kind, entity, t, score=score, model="threshold@1", evidence={"value": 100 + score})


# -- routing -------------------------------------------------------------------------------------


def test_routing_picks_town_and_department_inside_and_on_borders(city):
    ref = RefData.load_dir(city)
    inside = ref.place(120.45, 31.10)
    assert (inside["city"], inside["county"], inside["town"]) == ("Lakeside City", "West County", "West Lower Town")
    # On the line between two towns of one county: both cover it, the smaller id wins, every time.
    assert ref.place(120.45, 31.20)["town_id"] == "town-west-lower"
    # On the county border (and a town corner): east < west by id.
    corner = ref.place(120.60, 31.20)
    assert (corner["county_id"], corner["town_id"]) == ("county-east", "town-east-lower")
    assert ref.place(121.5, 31.2) == {}  # outside the city: no area, no crash

    vehicle = next(v for v in ref.vehicles.values() if v.hazardous)
    dwell = {
        "source": "gps",
        "kind": "dwell",
        "entity": vehicle.entity,
        "score": 0.8,
        "detector_severity": "major",
        "model": "vehicle@1",
        "evidence": {"lon": 120.75, "lat": 31.45},
    }
    routed = route(dwell, ref)
    assert routed["area"]["town_id"] == "town-east-upper"
    assert routed["departments"] == ["transport", "emergency_management"]
    assert routed["action"]["unit"] == "unit-east-upper-transport"
    assert routed["severity"] == "critical"  # major, raised one step for a hazardous-goods vehicle
    assert routed["context"]["vehicle"]["plate"] == vehicle.plate

    station = next(s for s in ref.sites.values() if s.category == "air_station")
    air = route(
        {
            "source": "air",
            "kind": "pm25_over_limit",
            "entity": station.meters[0],
            "score": 0.5,
            "detector_severity": "warning",
            "model": "threshold@1",
            "evidence": {},
        },
        ref,
    )
    assert air["departments"] == ["ecology_environment"] and air["location"] == {"lon": station.lon, "lat": station.lat}
    assert air["action"]["unit"].endswith("ecology_environment") and air["severity"] == "warning"
    fishing = route(
        {
            "source": "video",
            "kind": "ban_fishing",
            "entity": "cam-x",
            "score": 0.9,
            "detector_severity": "major",
            "model": "video@1",
            "evidence": {},
        },
        ref,
    )
    assert fishing["departments"] == ["agriculture_rural_affairs"] and fishing["area"] == {}


def test_reference_data_errors_name_file_line_and_field(city, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in city.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    lines = (bad / "sites.csv").read_text().splitlines()
    lines[5] = lines[5].replace(",operating,", ",shut,")
    (bad / "sites.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(RefDataError, match=r"sites\.csv:6: status: Input should be 'operating', 'suspended' or "):
        RefData.load_dir(bad)
    result = CliRunner().invoke(cli, ["refdata", "load", str(bad)])
    assert result.exit_code == 2 and "sites.csv:6: status" in result.output

    (bad / "sites.csv").write_bytes((city / "sites.csv").read_bytes())
    lines = (bad / "vehicles.csv").read_text().splitlines()
    lines[1] = lines[1].replace("route-ring", "route-nowhere")
    (bad / "vehicles.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(RefDataError, match=r"vehicles\.csv: vehicle 'gps-0000000': unknown route 'route-nowhere'"):
        RefData.load_dir(bad)
    (bad / "areas.geojson").write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", '
        '"properties": {"id": "x", "level": "town"}, "geometry": {"type": "Point", '
        '"coordinates": [1, 2]}}]}'
    )
    with pytest.raises(RefDataError, match=r"areas\.geojson: feature 0 \(x\): needs a valid Polygon"):
        RefData.load_dir(bad)


# -- merging and lifecycle (real Redis) ------------------------------------------------------------


async def alert_desk(
    redis_url: str, city: Path, quiet_s: float = 1800.0
) -> tuple[aioredis.Redis, AlertStore, AlertManager, list[str]]:
    """A Redis client, an alert store and manager (every kind quiet for ``quiet_s``) over ``city``'s reference
    data (stored), and its air stations."""
    r = aioredis.Redis.from_url(redis_url)
    await refstore.save(r, RefData.load_dir(city))
    cache = RefCache(r)
    await cache.refresh()
    store = AlertStore(r, Settings(redis_url=redis_url))
    manager = AlertManager(store, cache, QuietPeriods({"*": quiet_s}))
    stations = [s.meters[0] for s in cache.current.sites.values() if s.category == "air_station"]
    return r, store, manager, stations


def test_duplicates_merge_lifecycle_refuses_illegal_steps_and_recurrence_reopens(redis_url, city):
    async def scenario():
        r, store, manager, stations = await alert_desk(redis_url, city)
        settings, station = Settings(redis_url=redis_url), stations[0]

        burst = [_signal(station, TS + 60 * i, score=0.5 + i / 100) for i in range(12)]
        for signal in burst:
            signal.evidence["note"] = '河岸 "quoted" \\ ✓'  # stored byte for byte through the Lua commit
        first = await manager.handle(burst[:5])
        assert [a.event for a in first] == ["opened"]
        assert "河岸" in orjson.dumps(first[0].doc()).decode()
        assert (await r.xrange(ALERT_STREAM))[-1][1][b"alert"] == orjson.dumps(first[0].doc())
        again = await manager.handle(burst[3:])  # redelivered overlap: 3 and 4 count once
        assert [a.event for a in again] == ["merged"]
        assert await manager.handle(burst) == []  # everything redelivered: nothing changes
        alert = await store.get(first[0].id)
        assert (alert["count"], alert["status"], alert["first_seen"], alert["last_seen"]) == (
            12,
            "open",
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:11:00.000Z",
        )
        assert alert["score"] == 0.61 and alert["area"]["city"] == "Lakeside City"
        assert alert["departments"] == ["ecology_environment"]

        aid = alert["id"]
        with pytest.raises(TransitionError, match="dispatch needs the department"):
            await store.transition(aid, "dispatch", "li.wei")
        await store.transition(aid, "acknowledge", "li.wei")
        with pytest.raises(TransitionError, match="cannot acknowledge an alert that is acknowledged"):
            await store.transition(aid, "acknowledge", "li.wei")
        await store.transition(aid, "dispatch", "li.wei", "send a patrol", "ecology_environment")
        await store.transition(aid, "resolve", "zhang.min", "source found and stopped")
        with pytest.raises(TransitionError, match="cannot false positive an alert that is resolved"):
            await store.transition(aid, "false_positive", "zhang.min")
        history = (await store.get(aid))["history"]
        assert [(h["from"], h["to"], h["by"]) for h in history] == [
            ("open", "acknowledged", "li.wei"),
            ("acknowledged", "dispatched", "li.wei"),
            ("dispatched", "resolved", "zhang.min"),
        ]
        labels = [orjson.loads(f[b"label"]) for _, f in await r.xrange(LABEL_STREAM)]
        assert [(x["id"], x["label"], x["by"]) for x in labels] == [(aid, True, "zhang.min")]

        recurring = _signal(station, TS + 60 * 20)
        recur = await manager.handle([recurring])  # within the quiet period
        assert [(a.id, a.event, a.status, a.reopened) for a in recur] == [(aid, "reopened", "open", 1)]
        reopened = await store.get(aid)
        step = reopened["history"][-1]  # the engine's step, with the signal that re-opened it
        assert (step["action"], step["from"], step["to"], step["by"], step["at"]) == (
            "reopen",
            "resolved",
            "open",
            "engine",
            "2026-01-01T00:20:00.000Z",
        )
        assert (step["signal"]["evidence"], step["signal"]["kind"]) == (recurring.evidence, recurring.kind)
        shown = AlertView("Asia/Shanghai", load_sources(settings)).display(reopened, "zh-CN")["history"][-1]
        assert (shown["by"], shown["action"], shown["at"], shown["to"]) == (
            "系统",
            "重新打开",
            "2026-01-01 08:20:00",
            "待处理",
        )
        later = await manager.handle([_signal(station, TS + 60 * 20 + 1801)])  # after it: a new alert
        assert later[0].event == "opened" and later[0].id != aid
        await store.transition(later[0].id, "false_positive", "li.wei")
        with pytest.raises(TransitionError, match="cannot resolve an alert that is false_positive"):
            await store.transition(later[0].id, "resolve", "li.wei")
        assert [a["id"] for a in await store.list(status="open")] == [aid]
        assert {a["id"] for a in await store.list(area="town-" + alert["area"]["town_id"][5:])} == {aid, later[0].id}
        await r.aclose()

    run(scenario())


def test_a_regional_episode_is_one_alert_listing_its_stations_and_a_recovery_ends_its_outage(redis_url, city):
    """Grouped signals from many stations merge into one stored incident (the group's, with its members, routed
    by the first member's place), counted once; an entity back after its silence updates the outage's alert."""

    async def scenario():
        import msgspec

        r, store, manager, stations = await alert_desk(redis_url, city, quiet_s=7200.0)
        stations = stations[:3]

        def polluted(entity: str, t: float) -> Signal:
            signal = _signal(entity, t, kind="aqi_polluted")
            return msgspec.structs.replace(signal, group="all")

        first = await manager.handle([polluted(stations[0], TS), polluted(stations[1], TS)])
        later = await manager.handle([polluted(stations[2], TS + 3600), polluted(stations[0], TS + 3600)])
        assert [a.event for a in first] == ["opened"] and [a.event for a in later] == ["merged"]
        alert = await store.get(first[0].id)
        assert (alert["entity"], alert["members"], alert["count"]) == ("all", stations, 4)
        assert alert["location"] is not None and alert["departments"] == ["ecology_environment"]
        assert [a["id"] for a in await store.list(kind="aqi_polluted")] == [first[0].id]

        meter = "power-0000001"
        silent = instant_signal("power", "silent", meter, TS, evidence={"last_seen": TS - 300})
        back = msgspec.structs.replace(
            instant_signal("power", "silence_recovered", meter, TS + 86_400 * 3, evidence={"silent_for_s": 3e5}),
            ends="silent",
        )
        opened = await manager.handle([silent])
        ended = await manager.handle([back])
        assert [(a.id, a.event, a.kind, a.count) for a in ended] == [(opened[0].id, "merged", "silent", 1)]
        outage = await store.get(opened[0].id)
        assert outage["evidence"]["ended"] == "2026-01-04T00:00:00.000Z" and outage["evidence"]["silent_for_s"] == 3e5
        assert [a["kind"] for a in await store.list() if a["entity"] == meter] == ["silent"]
        await r.aclose()

    run(scenario())


# -- the worker end to end ------------------------------------------------------------------------


class FlakyReceiver:
    """An Alertmanager webhook receiver that answers 503 for ``fail_for_s`` after its first request, then 200."""

    def __init__(self, fail_for_s: float):
        self.fail_for_s = fail_for_s
        self.first_request: float | None = None
        self.port = free_port()
        self.accepted: list[dict] = []
        self.refused = 0
        self.loop = None
        threading.Thread(target=self._serve, daemon=True).start()
        wait_until(lambda: self.loop is not None, what="the webhook receiver")

    def _serve(self) -> None:
        import asyncio

        async def hook(request):
            body = await request.json()
            self.first_request = self.first_request or time.monotonic()
            if time.monotonic() < self.first_request + self.fail_for_s:
                self.refused += 1
                return web.Response(status=503)
            self.accepted += body["alerts"]
            return web.Response(status=200)

        async def main():
            app = web.Application()
            app.router.add_post("/hook", hook)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self.loop = asyncio.get_running_loop()
            await asyncio.Event().wait()

        asyncio.run(main())


@pytest.mark.integration
def test_worker_merges_routes_delivers_to_a_flaky_webhook_and_serves_the_api(stack, city):
    receiver = FlakyReceiver(fail_for_s=4.0)
    hooks = orjson.dumps(
        [{"name": "ops", "url": f"http://127.0.0.1:{receiver.port}/hook", "max_backoff_s": 1.0}]
    ).decode()
    assert (
        CliRunner()
        .invoke(cli, ["refdata", "load", str(city)], env={"WARDEN_REDIS_URL": stack.settings.redis_url})
        .exit_code
        == 0
    )
    worker = stack.start_worker(WARDEN_WEBHOOKS=hooks, WARDEN_API_TOKEN="s3cret")
    ref = RefData.load_dir(city)
    stations = [s.meters[0] for s in ref.sites.values() if s.category == "air_station"][:6]
    # Each station: 8 hourly readings over the limit (the rule signals once an hour) -> one alert of count 8
    # (the tests' station source: one reading is enough; no department rule names it, so the centre reviews it).
    records = [
        (st.encode(), orjson.dumps({"entity": st, "ts": TS + 3601 * i, "pm25": 120.0 + i}), None)
        for i in range(8)
        for st in stations
    ]
    run(_send(stack.settings.bootstrap_servers, "telemetry.station", records))
    client = redis.Redis.from_url(stack.settings.redis_url)

    def stored() -> dict[str, dict]:
        keys = [k for k in client.scan_iter("warden:alert:*") if k.count(b":") == 2]
        return {k.decode().split(":")[2]: orjson.loads(client.hget(k, "doc")) for k in keys}

    pm25 = wait_until(
        lambda: (
            (a := {i: d for i, d in stored().items() if d["kind"] == "pm25_over_limit"})
            and len(a) == len(stations)
            and {d["count"] for d in a.values()} == {8}
            and a
        ),
        what="each station's 8 hourly signals merged into one alert of count 8",
    )
    wait_until(
        lambda: {a["labels"]["id"] for a in receiver.accepted} >= set(stored()),
        timeout=90,
        what="every alert delivered to the recovered webhook",
    )
    time.sleep(2.0)  # a duplicate delivery would arrive by now
    ids = Counter(a["labels"]["id"] for a in receiver.accepted if a["status"] == "firing")
    assert receiver.refused >= 1 and set(ids) == set(stored()) and set(ids.values()) == {1}
    for a in receiver.accepted:
        if a["labels"]["id"] in pm25:
            assert a["labels"]["department"] == "operations_centre" and a["labels"]["town"]
            # for people: Chinese by default, units, the city's offset (RFC 3339)
            assert a["annotations"]["summary"] == f"PM2.5超过限值: {a['labels']['entity']}"
            assert "µg/m³" in a["annotations"]["evidence"] and a["startsAt"].endswith("+08:00")

    import urllib.error
    import urllib.request

    def call(path: str, body: dict | None = None, token: str | None = "s3cret") -> tuple[int, dict]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{worker.port}{path}",
            method="POST" if body else "GET",
            data=orjson.dumps(body) if body else None,
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())

    aid = sorted(pm25)[0]
    assert call("/api/alerts", token=None)[0] == 401 and call("/api/alerts", token="wrong")[0] == 401
    status, listed = call("/api/alerts?status=open&kind=pm25_over_limit&lang=en")
    assert status == 200 and {a["id"] for a in listed["alerts"]} == set(pm25)
    assert {a["display"]["title"] for a in listed["alerts"]} == {"PM2.5 over its limit"}
    env = {"WARDEN_REDIS_URL": stack.settings.redis_url}
    by_cli = CliRunner().invoke(cli, ["alerts", "list", "--kind", "pm25_over_limit", "--json"], env=env)
    assert by_cli.exit_code == 0, by_cli.output
    shown_cli = [orjson.loads(line) for line in by_cli.output.splitlines()]
    assert {(a["display"]["title"], a["display"]["first_seen"]) for a in shown_cli} == {
        ("PM2.5超过限值", "2026-01-01 08:00:00")  # TS, local
    }
    status, err = call(f"/api/alerts/{aid}/dispatch", {"by": "wang.fang", "department": "agriculture"})
    assert status == 400 and "no department 'agriculture'" in err["error"]  # a typo is not a department
    assert call(f"/api/alerts/{aid}/false-positive", {"by": "wang.fang", "note": "calibration"})[0] == 200
    status, err = call(f"/api/alerts/{aid}/resolve", {"by": "wang.fang"})
    assert status == 409 and "cannot resolve an alert that is false_positive" in err["error"]
    assert call(f"/api/alerts/{aid}/acknowledge", {"note": "no name"})[0] == 400
    assert call("/api/alerts/0000/acknowledge", {"by": "x"})[0] == 404
    status, shown = call(f"/api/alerts/{aid}")
    assert shown["status"] == "false_positive" and shown["history"][0]["by"] == "wang.fang (WARDEN_API_TOKEN)"
    wait_until(
        lambda: any(a["status"] == "resolved" and a["labels"]["id"] == aid for a in receiver.accepted),
        what="the closing notice at the webhook",
    )
    on_topic = run(_read_topic(stack.settings.bootstrap_servers, "warden.alerts", len(ids) + 1))
    assert {a["id"] for a in on_topic if a["event"] == "opened"} == set(ids)

    # New reference data reaches the running worker without a restart.
    version = int(client.get("warden:refdata:version"))
    assert (
        CliRunner()
        .invoke(cli, ["refdata", "load", str(city)], env={"WARDEN_REDIS_URL": stack.settings.redis_url})
        .exit_code
        == 0
    )
    import urllib.request as rq

    wait_until(
        lambda: (
            orjson.loads(rq.urlopen(f"http://127.0.0.1:{worker.port}/health").read())["refdata_version"] == version + 1
        ),
        what="the worker to pick up new reference data",
    )


def test_staff_marks_lower_the_severity_of_kinds_they_reject_but_never_of_limit_breaches(redis_url):
    async def scenario():
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(redis_url)
        store = AlertStore(r, Settings(redis_url=redis_url))
        cache = RefCache(r)
        manager = AlertManager(store, cache, QuietPeriods({"*": 60.0}))

        def sig(kind: str, model: str, i: int, source: str = "power") -> Signal:
            return instant_signal(source, kind, f"m-{i}", TS + i, score=0.6, model=model)

        kinds = [
            ("kw_consumption_abnormal", "consumption@1", False),
            ("night_flow", "night_flow@1", True),
            ("voltage_low", "threshold@1", False),
        ]
        for i in range(15):
            for kind, model, real in kinds:
                (alert,) = await manager.handle([sig(kind, model, i)])
                await store.transition(alert.id, "resolve" if real else "false_positive", "officer.chen")
        assert await manager.learn_labels() == 45 and await manager.learn_labels() == 0
        fresh = {a.kind: a for a in await manager.handle([sig(k, m, 100) for k, m, _ in kinds])}
        assert fresh["kw_consumption_abnormal"].severity == "info"
        assert fresh["kw_consumption_abnormal"].context["feedback"]["severity_was"] == "warning"
        assert fresh["night_flow"].severity == "warning"
        assert fresh["voltage_low"].severity == "warning"  # a limit breach is never lowered
        await r.aclose()

    run(scenario())


def test_the_cli_refuses_unknown_filters_and_departments_and_pipes_whole_lines(redis_url, city):
    async def raise_one() -> str:
        r, _, manager, stations = await alert_desk(redis_url, city)
        [alert] = await manager.handle([_signal(stations[0], TS)])
        await r.aclose()
        return alert.id

    aid = run(raise_one())
    env = {"WARDEN_REDIS_URL": redis_url}
    cli_run = lambda *args: CliRunner().invoke(cli, list(args), env=env)  # noqa: E731
    bogus = cli_run("alerts", "list", "--severity", "bogus")
    assert bogus.exit_code == 2 and "bogus" in bogus.output
    unknown = cli_run("alerts", "list", "--kind", "pm25_over_limt")
    assert (
        unknown.exit_code == 2 and "no alert has kind 'pm25_over_limt'; with alerts: pm25_over_limit" in unknown.output
    )
    nowhere = cli_run("alerts", "dispatch", aid, "--to", "agriculture", "--by", "li.wei")
    assert nowhere.exit_code == 2 and "no department 'agriculture'" in nowhere.output
    assert cli_run("alerts", "dispatch", aid, "--to", "agriculture_rural_affairs", "--by", "li.wei").exit_code == 0
    listed = cli_run("alerts", "list", "--language", "en")
    row = next(line for line in listed.output.splitlines() if aid in line)  # piped: one line per alert
    assert "PM2.5 over its limit" in row and "Ecology and Environment" in row and len(row) > 80
    tail = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "alerts", "tail", "--history", "0"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    time.sleep(4)
    tail.terminate()
    out = tail.communicate(timeout=10)[0].decode()
    assert "Traceback" not in out and "must be a positive" not in out, out
