"""The simulated city's incidents are detected: recall and precision per incident kind, in-process."""

from __future__ import annotations

from models.fusion import FusionBook, load_patterns
from models.incidents import IncidentBook, QuietPeriods
from models.signal import iso
from replay.evaluation import read_ground_truth, score_incidents
from replay.offline import merger, replay
from settings import Settings
from streams.city import city_ref
from streams.registry import load_registry
from streams.scenario import KINDS, Scenario
from streams.simulator import CitySimulator

T0 = 1_767_225_600 + 10 * 3600   # 18:00 local to 06:00: day and night rules, a whole leak night


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
    settings = Settings(partitions=4)
    book = IncidentBook(QuietPeriods(settings.alert_quiet_s))
    replay(records, load_registry(settings), settings, refdata=ref,
           on_signal=merger(book, FusionBook(load_patterns()), ref))
    alerts = [{**i, "first_seen": iso(i["first_seen"]), "last_seen": iso(i["last_seen"])}
              for i in book.incidents.values()]
    truths = read_ground_truth([truth_file])
    assert [t.incident for t in truths] == [i.kind for i in scenario.started]
    results = score_incidents(alerts, truths, grace_s=4200, until=end - 600)
    assert set(results) == set(KINDS)
    for kind, r in results.items():
        assert r.windows >= 1, kind
        assert r.recall == 1.0, (kind, r.row())
        assert r.precision >= 0.9, (kind, r.row())
        assert r.median_delay_s <= 60, (kind, r.row())
