"""Fusion: a closed plant's electricity and water use and a dwelling hazardous vehicle become one alert."""

from __future__ import annotations

import time

import orjson
import pytest
from cases import instant_signal

from models.fusion import FusionBook, PatternError, fuse, load_patterns, site_doc
from models.incidents import IncidentBook, QuietPeriods
from models.signal import Signal
from state.refdata.reference import RefData
from streams.event_time import iso
from tests.conftest import run, wait_until
from tests.test_worker_integration import _send

PLANT = {
    "id": "plant-1",
    "name": "Old Dye Works",
    "lon": 120.60,
    "lat": 31.30,
    "category": "chemical_plant",
    "status": "closed",
    "meters": "pw-1;wt-1",
}
OPEN_PLANT = {
    **PLANT,
    "id": "plant-2",
    "name": "Working Plant",
    "lon": 120.70,
    "status": "operating",
    "meters": "pw-2;wt-2",
}
T0 = 1_767_225_600.0


def _ref() -> RefData:
    return RefData.from_doc({"sites": [PLANT, OPEN_PLANT]})


def _signal(source: str, kind: str, entity: str, ts: float, **evidence) -> Signal:
    return instant_signal(source, kind, entity, ts, severity="major", evidence=evidence)


def _at_gate(entity: str, ts: float, plant: dict, north_m: float = 50.0) -> Signal:
    return _signal("gps", "dwell", entity, ts, lon=plant["lon"], lat=plant["lat"] + north_m / 111_000)


def test_three_pieces_about_a_closed_plant_fuse_into_one_alert():
    book, alerts = FusionBook(load_patterns()), IncidentBook(QuietPeriods({"*": 7200}))
    ref = _ref()
    fused = []
    for sig in [
        _signal("power", "closed_site_consumption", "pw-1", T0),
        _signal("water", "closed_site_consumption", "wt-1", T0 + 600),
        _at_gate("truck-9", T0 + 1800, PLANT),
    ]:
        fused += book.add(sig, ref)
    assert len(fused) == 1
    f = fused[0]
    assert (f.source, f.kind, f.entity, f.severity) == ("fusion", "suspected_illegal_resumption", "plant-1", "critical")
    assert [p["name"] for p in f.evidence["pieces"]] == ["electricity", "water", "hazardous_vehicle"]
    assert f.evidence["site"]["name"] == "Old Dye Works" and iso(f.ts) == iso(T0 + 1800)
    # one more piece completes nothing (evidence counts once); a full recurrence fuses again, into the same alert
    assert book.add(_signal("power", "closed_site_consumption", "pw-1", T0 + 2400), ref) == []
    again = book.add(_signal("water", "closed_site_consumption", "wt-1", T0 + 3000), ref)
    again += book.add(_at_gate("truck-9", T0 + 3600, PLANT), ref)
    assert [iso(s.ts) for s in again] == [iso(T0 + 3600)]
    for s in fused + again:
        alerts.add(s)
    assert len(alerts.incidents) == 1 and next(iter(alerts.incidents.values()))["count"] == 2
    # the pieces held are those newer than the last completion, and they complete nothing more
    key = ("illegal_resumption", "plant-1")
    held, after = book.pieces[key], book.last[key]
    assert after == T0 + 3600 and all(p["ts"] > after for got in held.values() for p in got)
    assert fuse(book.patterns[0], site_doc(ref.sites["plant-1"]), held, after) == []


def _episodes() -> list[Signal]:
    """Episodes at the closed plant three and fourteen hours apart, and pieces between them that complete nothing
    (more of one name than the store holds)."""
    out = []
    for start in (T0, T0 + 3 * 3600, T0 + 17 * 3600):
        out += [
            _signal("power", "closed_site_consumption", "pw-1", start),
            _signal("water", "closed_site_consumption", "wt-1", start + 600),
            _at_gate("truck-9", start + 1800, PLANT),
            _signal("power", "closed_site_consumption", "pw-1", start + 5400),
        ]
    # the plant's meter keeps reporting use, more pieces than a name holds
    out += [_signal("power", "kw_consumption_abnormal", "pw-1", T0 + 7200 + 300 * k) for k in range(20)]
    return sorted(out, key=lambda s: s.ts)


@pytest.mark.parametrize("seed", range(6))
def test_the_live_store_fuses_as_replay_does_however_sources_interleave_and_after_redeliveries(seed):
    """Pieces in Redis are kept by event time and signal id: each source's signals in order but the sources
    interleaved at random, and a stretch of one source delivered again (a crash), give the fused signals (ids,
    evidence) of the in-memory book fed in event-time order."""
    import asyncio
    import random

    from agents.embedded.redis_server import EmbeddedRedis
    from agents.worker.fusion import Fusion
    from settings import Settings
    from state.redis_client import redis_client

    signals = _episodes()
    book, ref = FusionBook(load_patterns()), _ref()
    expected = [f for sig in signals for f in book.add(sig, ref)]
    rng = random.Random(seed)
    streams = {source: [x for x in signals if x.source == source] for source in ("power", "water", "gps")}
    again = rng.choice(["power", "water", "gps"])
    cut = rng.randrange(len(streams[again]))
    streams[again] += streams[again][cut:]  # redelivered from a checkpoint after a crash
    arrivals = []
    while any(streams.values()):
        arrivals.append(streams[rng.choice([k for k, v in streams.items() if v])].pop(0))

    async def live(url: str) -> list[Signal]:
        redis = redis_client(Settings(redis_url=url))
        try:
            fusion, fused = Fusion(redis, load_patterns(), lambda: ref), {}
            for k in range(0, len(arrivals), 2):
                for f in await fusion.handle(arrivals[k : k + 2]):
                    fused[f.id] = f  # the alert manager merges a signal id once
            return list(fused.values())
        finally:
            await redis.aclose()

    server = EmbeddedRedis().start()
    try:
        got = asyncio.run(live(server.url))
    finally:
        server.stop()
    assert len(expected) == 3
    assert sorted((f.id, f.ts, orjson.dumps(f.evidence)) for f in got) == sorted(
        (f.id, f.ts, orjson.dumps(f.evidence)) for f in expected
    )


@pytest.mark.parametrize("case", ["operating_plant", "truck_far_away", "outside_window", "two_pieces"])
def test_no_fusion_without_the_whole_pattern(case):
    book, ref = FusionBook(load_patterns()), _ref()
    plant, meter, truck_m, gap = PLANT, "1", 50.0, 600.0
    if case == "operating_plant":
        plant, meter = OPEN_PLANT, "2"
    if case == "truck_far_away":
        truck_m = 2_000.0
    if case == "outside_window":
        gap = 4 * 3600.0  # 3 pieces spanning 8 h > 6 h window
    signals = [
        _signal("power", "closed_site_consumption", f"pw-{meter}", T0),
        _signal("water", "closed_site_consumption", f"wt-{meter}", T0 + gap),
        _at_gate("truck-9", T0 + 2 * gap, plant, truck_m),
    ]
    if case == "two_pieces":
        signals = signals[:2]
    assert [f for s in signals for f in book.add(s, ref)] == []


def test_a_bad_pattern_file_is_a_clear_error(tmp_path):
    (tmp_path / "p.toml").write_text(
        'name = "x"\nkind = "y"\nwindow_s = -1\n[[evidence]]\nname = "a"\nsource = "power"\nkinds = ["k"]\n'
    )
    with pytest.raises(PatternError, match=r"p\.toml: window_s: Input should be greater than 0"):
        load_patterns([tmp_path])


@pytest.mark.integration
def test_live_worker_fuses_records_from_three_sources(stack, tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    folder = tmp_path / "ref"
    folder.mkdir()
    cols = ["id", "name", "lon", "lat", "category", "status", "licence", "licence_expiry", "meters"]
    rows = [",".join(str(site.get(c, "")) for c in cols) for site in (PLANT, OPEN_PLANT)]
    (folder / "sites.csv").write_text(",".join(cols) + "\n" + "\n".join(rows) + "\n")
    (folder / "vehicles.csv").write_text(
        "entity,plate,hazard_class,operator,routes,sites\ntruck-9,苏E·12345,3,Haulage Co,,\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", "refdata", "load", str(folder)],
        cwd=ROOT,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    stack.start_worker()
    now = time.time() - 3600
    power = [{"entity": "pw-1", "ts": now + i * 60, "kwh": 100 + i, "kw": 40.0, "voltage": 230.0} for i in range(5)]
    water = [{"entity": "wt-1", "ts": now + i * 60, "flow": 2.0, "total": 50 + i, "pressure": 3.0} for i in range(5)]
    gps = [
        {
            "entity": "truck-9",
            "ts": now + i * 10,
            "lat": PLANT["lat"] + 0.0004,
            "lon": PLANT["lon"],
            "speed": 0.0,
            "heading": 0.0,
        }
        for i in range(240)
    ]  # 40 minutes standing at the gate
    bootstrap = stack.settings.bootstrap_servers
    for topic, records in (("telemetry.power", power), ("telemetry.water", water), ("telemetry.gps", gps)):
        run(_send(bootstrap, topic, [(None, orjson.dumps(records), None)]))
    fused = wait_until(
        lambda: [a for a in stack.stream_alerts() if a["source"] == "fusion"], timeout=90, what="a fused alert"
    )
    kinds = {a["kind"] for a in stack.stream_alerts()}
    assert {"closed_site_consumption", "dwell"} <= kinds
    assert {(a["kind"], a["entity"]) for a in fused} == {("suspected_illegal_resumption", "plant-1")}
    alert = fused[-1]
    assert alert["severity"] == "critical" and "emergency_management" in alert["departments"]
    assert sorted(p["name"] for p in alert["evidence"]["pieces"]) == ["electricity", "hazardous_vehicle", "water"]
    assert alert["location"] == {"lon": PLANT["lon"], "lat": PLANT["lat"]}
