"""The simulated city's incidents are detected: recall and precision per incident kind, in-process."""

from __future__ import annotations

from agents.present.wording import LANGUAGES, Wording
from models.catalog import load_sources
from replay.evaluation import Truth, read_ground_truth, score_incidents, unexplained
from replay.offline import replay
from replay.pipeline import AlertPipeline
from settings import Settings
from streams.sim.city import city_ref
from streams.sim.scenario import KINDS, Scenario
from streams.sim.simulator import CitySimulator

T0 = 1_767_225_600 + 10 * 3600  # 18:00 local to 06:00: day and night rules, a whole leak night


def _alerts(records: list[dict], ref) -> list[dict]:
    """The alerts a worker would raise for ``records``: replayed in-process with fusion, merged."""
    settings = Settings(partitions=4)
    pipeline = AlertPipeline(settings, ref)
    replay(records, load_sources(settings), settings, refdata=ref, on_signal=pipeline.add)
    return pipeline.scored()


def test_every_incident_kind_is_detected_with_few_false_alarms(tmp_path):
    sim = CitySimulator(entities=1200, seed=11, start_ts=T0)
    ref = city_ref(sim, seed=11)
    truth_file = tmp_path / "truth.ndjson"
    scenario = Scenario(sim, ref, seed=11, first_at=T0 + 600, every_s=600, truth=truth_file)
    end = T0 + 12 * 3600
    records = []
    for batch in scenario.ticks():
        records += batch
        if sim.ts >= end:
            break
    alerts = _alerts(records, ref)
    truths = read_ground_truth([truth_file])
    assert [t.incident for t in truths] == [i.kind for i in scenario.started]
    results = score_incidents(alerts, truths, grace_s=4200, until=end - 600)
    # Group renting shows after three whole days (its own test): here it is injected but not yet observable.
    renting = results.pop("group_renting")
    assert "group_renting" in [i.kind for i in scenario.started] and (renting.windows, renting.alerts) == (0, 0)
    assert set(results) == set(KINDS) - {"illegal_fishing", "group_renting"}  # January: no fishing ban
    for kind, r in results.items():
        assert r.windows >= 1, kind
        assert r.recall == 1.0, (kind, r.row())
        assert r.precision >= 0.95, (kind, r.row())
        assert r.median_delay_s <= 60, (kind, r.row())
    # every alert counts: normal traffic (voltage sags of a minute, a crowd of trucks, one frame) raises nothing
    false = unexplained(alerts, truths, grace_s=4200)
    assert len(alerts) >= 40 and not false, [(a["kind"], a["entity"]) for a in false]
    # the people at the screens read every kind raised in their language (not its identifier)
    for language in LANGUAGES:
        assert [a["kind"] for a in alerts if not Wording.of(language).knows(a["kind"])] == [], language


def test_illegal_fishing_during_the_ban_is_detected_and_none_is_injected_outside_it():
    may = 1_779_148_800  # 2026-05-19T00:00:00Z, inside the fishing ban (03-01 .. 06-30)
    for start, expected in ((may, 6), (T0, 0)):
        sim = CitySimulator(entities=600, seed=5, start_ts=start)
        ref = city_ref(sim, seed=5)
        scenario = Scenario(sim, ref, seed=5, first_at=start + 300, every_s=600, kinds=("illegal_fishing",))
        records = []
        for batch in scenario.ticks():
            records += batch
            if sim.ts >= start + 3600:
                break
        assert len(scenario.started) == expected
        if not expected:
            continue
        alerts = _alerts(records, ref)
        truths = [Truth(i.kind, i.entities, i.start, i.end, i.observable, i.alert_kinds) for i in scenario.started]
        r = score_incidents(alerts, truths, grace_s=600)["illegal_fishing"]
        assert (r.recall, r.precision) == (1.0, 1.0) and r.median_delay_s <= 60, r.row()


def test_group_renting_is_detected_when_its_third_whole_day_ends_and_no_other_dwelling_is_flagged():
    midnight = T0 - 18 * 3600  # local: a whole first day, the peers' yardstick for the incident's first
    sim = CitySimulator(entities=400, seed=8, start_ts=midnight)
    ref = city_ref(sim, seed=8)
    scenario = Scenario(sim, ref, seed=8, first_at=midnight + 600, every_s=10 * 86_400, kinds=("group_renting",))
    end = midnight + 4 * 86_400 + 3600

    def meters():  # only what the detector reads: power and water, streamed (about 1.8M records)
        for batch in scenario.ticks():
            yield from (r for r in batch if r["source"] in ("power", "water"))
            if sim.ts >= end:
                return

    settings = Settings(partitions=2)  # 400 entities: enough dwellings per partition to be each other's peers
    pipeline = AlertPipeline(settings, ref)
    replay(meters(), load_sources(settings), settings, refdata=ref, on_signal=pipeline.add)
    alerts = pipeline.scored()
    (incident,) = scenario.started
    assert incident.observable < end
    truths = [
        Truth(i.kind, i.entities, i.start, i.end, i.observable, i.alert_kinds, i.explains) for i in scenario.started
    ]
    r = score_incidents(alerts, truths, grace_s=600)["group_renting"]
    assert (r.recall, r.precision) == (1.0, 1.0) and r.median_delay_s <= 60, r.row()
    assert {a["entity"] for a in alerts if a["kind"] == "group_renting"} <= set(incident.entities)


def test_normal_traffic_keeps_public_holidays_like_weekends():
    """Daytime use on National Day (Thu 1 Oct 2026) is like a Sunday's, above the working Wednesday before."""

    def daytime_kw(local_midnight: float) -> float:  # mean kW 10:00-14:00 local
        sim = CitySimulator(entities=200, seed=2, start_ts=local_midnight + 10 * 3600)
        kw: list[float] = []
        for batch in sim.ticks():
            kw += [r["kw"] for r in batch if r["source"] == "power"]
            if sim.ts >= local_midnight + 14 * 3600:
                return sum(kw) / len(kw)

    wednesday = 1_790_726_400 - 8 * 3600  # 2026-09-30 00:00 local
    working, holiday, sunday = (daytime_kw(wednesday + d * 86_400) for d in (0, 1, -17))  # Wed, Thu 1 Oct, 13 Sep
    assert holiday > 1.15 * working and abs(holiday - sunday) < 0.05 * sunday, (working, holiday, sunday)
