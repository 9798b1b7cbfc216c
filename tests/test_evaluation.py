"""Labels, scoring and the to-Kafka pacing order, without a broker."""

from __future__ import annotations

import orjson
import pytest

from replay.archive import Chunk
from replay.evaluation import LabelError, read_labels, score
from replay.to_kafka import in_event_time_order


def _lines(path, docs):
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    return path


def test_ground_truth_and_staff_marks_become_windows(tmp_path):
    truth = _lines(
        tmp_path / "truth.ndjson",
        [
            {"kind": "leak", "entities": ["w1", "w2"], "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T02:00:00Z"},
            {
                "kind": "resumption",
                "alert_kinds": ["closed_site_consumption", "dwell"],
                "entity": "plant-1",
                "start": 1_767_225_600,
                "end": 1_767_229_200,
                "source": "power",
            },
        ],
    )
    mark = {
        "type": "staff",
        "id": "a1",
        "at": "2026-01-02T00:00:00Z",
        "label": True,
        "alert": {
            "kind": "pm25_over_limit",
            "entity": "st-1",
            "source": "air",
            "first_seen": "2026-01-01T05:00:00Z",
            "last_seen": "2026-01-01T06:00:00Z",
        },
    }
    rejected = {**mark, "id": "a2", "label": False}
    staff = _lines(tmp_path / "staff.ndjson", [mark, mark, rejected])  # exported twice: counted once
    windows = read_labels([truth, staff])
    assert sorted((w.kind, w.entity) for w in windows) == [
        ("closed_site_consumption", "plant-1"),
        ("dwell", "plant-1"),
        ("leak", "w1"),
        ("leak", "w2"),
        ("pm25_over_limit", "st-1"),
    ]
    alerts = [
        {"kind": "leak", "entity": "w1", "first_seen": "2026-01-01T00:30:00Z", "last_seen": "2026-01-01T00:40:00Z"},
        {"kind": "leak", "entity": "w9", "first_seen": "2026-01-01T00:30:00Z", "last_seen": "2026-01-01T00:30:00Z"},
    ]
    leak = score(alerts, windows)["leak"]
    assert (leak.alerts, leak.true_alerts, leak.windows, leak.detected) == (2, 1, 2, 1)
    assert leak.precision == 0.5 and leak.recall == 0.5 and leak.median_delay_s == 1800


@pytest.mark.parametrize(
    "line",
    [
        b"{not json",
        b'{"kind": "leak", "entity": "w1", "start": "soon", "end": 5}',
        b'{"kind": "leak", "start": 1, "end": 2}',
        b'["a list"]',
    ],
)
def test_a_bad_label_line_is_a_clear_error(tmp_path, line):
    path = tmp_path / "bad.ndjson"
    path.write_bytes(b'{"kind": "leak", "entity": "w1", "start": 1, "end": 2}\n' + line + b"\n")
    with pytest.raises(LabelError, match=r"bad\.ndjson:2: not a label"):
        read_labels([path])


def test_paced_replay_merges_partitions_in_event_time_order():
    p0 = [Chunk("metric", 0, [{"n": 0}, {"n": 2}], [10.0, 30.0]), Chunk("metric", 0, [{"n": 4}], [50.0])]
    p1 = [Chunk("power", 3, [{"n": 1}, {"n": 3}], [20.0, 40.0])]
    merged = list(in_event_time_order([iter(p0), iter(p1)]))
    assert [r["n"] for _, _, r in merged] == [0, 1, 2, 3, 4]
    assert [s for _, s, _ in merged] == ["metric", "power", "metric", "power", "metric"]
