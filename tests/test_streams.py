"""Sources, envelopes, partitioning, validation and the simulator."""

from __future__ import annotations

import random

import numpy as np
import pytest

from models.catalog import load_sources
from settings import Settings
from streams.envelope import decode
from streams.kafka.partitioner import partition_for, partitions_of
from streams.registry import SourceError
from streams.sim.simulator import CitySimulator
from streams.validation import Validator, parse_time

TS = 1_767_225_600


@pytest.mark.parametrize(
    "key,java_murmur2",
    [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    ],
)
def test_partition_matches_the_java_client(key, java_murmur2):
    # Kafka's UtilsTest vectors; the Java partitioner is toPositive(murmur2) % n.
    for n in (1, 3, 8, 12):
        assert partition_for(key, n) == (java_murmur2 & 0x7FFFFFFF) % n
        assert partitions_of([key], n).tolist() == [(java_murmur2 & 0x7FFFFFFF) % n]


def test_batch_partitioner_agrees_with_the_per_key_one():
    rng = random.Random(3)
    keys = ["".join(rng.choice("abcXYZ0123苏E·-é") for _ in range(rng.randint(0, 40))) for _ in range(5000)]
    for n in (1, 4, 7, 8):
        assert partitions_of(keys, n).tolist() == [partition_for(k, n) for k in keys]


def test_a_source_declares_its_producers_partitioner_and_the_deployment_sets_the_rest(tmp_path):
    (tmp_path / "gateway.toml").write_text(
        'name = "gateway"\ntopic = "telemetry.gateway"\npartitioner = "crc32"\n[fields.value]\ntype = "float"\n'
    )
    registry = load_sources(Settings(sources_dirs=[tmp_path]))
    for deployment in ("murmur2", "crc32"):
        schemes = registry.partitioners(Settings(partitioner=deployment))
        assert schemes["telemetry.gateway"] == "crc32" and schemes["telemetry.metric"] == deployment
    (tmp_path / "gateway.toml").write_text((tmp_path / "gateway.toml").read_text().replace("crc32", "fnv1a"))
    with pytest.raises(SourceError, match=r"gateway.toml: partitioner: Input should be 'murmur2' or 'crc32'"):
        load_sources(Settings(sources_dirs=[tmp_path]))


def test_a_worker_runs_only_the_sources_it_is_told_to():
    assert list(load_sources(Settings(run_sources="metric, power"))) == ["metric", "power"]
    with pytest.raises(SourceError, match="WARDEN_RUN_SOURCES names no declared source: metrics"):
        load_sources(Settings(run_sources="metrics"))


def test_crc32_partitioner_is_librdkafkas():
    # librdkafka's consistent_random: rd_crc32(key) % partitions, with the standard (zlib) CRC-32
    assert [partition_for(k, 8, "crc32") for k in ("a", "power-0000001", "dev-004217")] == [3, 6, 2]
    keys = [f"e{random.Random(3).random()}{i}" for i in range(500)]
    assert partitions_of(keys, 7, "crc32").tolist() == [partition_for(k, 7, "crc32") for k in keys]


def test_envelope_reads_objects_arrays_and_refuses_the_rest():
    assert decode(b'{"a": 1}').records == [{"a": 1}]
    assert decode(b'[{"a": 1}, 2]').records == [{"a": 1}, 2]
    assert decode(b"nope").reason == "not_json"
    assert decode(b"").reason == "empty"
    assert decode(b"1").reason == "not_object"
    assert decode(b"[" * 100_000).reason == "not_json"  # deep nesting
    assert decode(b"x" * 11, max_bytes=10).reason == "oversize"
    # a huge number does not sink the whole batch: the finite record survives
    out = decode(b'[{"v": 1e999}, {"v": 2}]')
    assert out.records[1] == {"v": 2} and out.records[0]["v"] == float("inf")


def test_registry_ships_six_sources_and_takes_new_declarations(tmp_path):
    assert set(load_sources(Settings())) == {"power", "water", "gps", "video", "air", "metric"}
    (tmp_path / "noise.toml").write_text(
        'name = "noise"\ntopic = "telemetry.noise"\n[fields.db]\ntype = "float"\nunit = "dB(A)"\n'
        "min = 0\nmax = 200\nrequired = true\nwindow = true\n"
        '[[rules]]\nkind = "loud"\nfield = "db"\nabove = 85\n'
    )
    reg = load_sources(Settings(sources_dirs=[tmp_path]))
    assert reg["noise"].topic == "telemetry.noise" and "telemetry.noise" in reg.topics
    (tmp_path / "broken.toml").write_text('name = "broken"\ntopic = "t"\n[fields.x]\ntype = "complex"\n')
    with pytest.raises(SourceError, match=r"broken.toml: fields.x.type"):
        load_sources(Settings(sources_dirs=[tmp_path]))
    (tmp_path / "broken.toml").unlink()
    (tmp_path / "short.toml").write_text(
        'name = "short"\ntopic = "t2"\ndetectors = ["anomaly"]\n[fields.x]\n'
        'type = "float"\nanomaly = true\n[anomaly]\nshape_memory = 10\n'
    )
    with pytest.raises(SourceError, match=r"short.toml: anomaly: .*shape_memory must be 0 \(off\) or at least"):
        load_sources(Settings(sources_dirs=[tmp_path]))
    (tmp_path / "short.toml").unlink()
    (tmp_path / "noise.toml").write_text(
        (tmp_path / "noise.toml")
        .read_text()
        .replace('topic = "telemetry.noise"\n', 'topic = "telemetry.noise"\ngroups = { "loud" = "source" }\n')
    )
    with pytest.raises(SourceError, match=r"noise.toml: 'groups' needs 'partitions = 1'"):
        load_sources(Settings(sources_dirs=[tmp_path]))


def test_validation_reasons():
    v = Validator(load_sources(Settings())["video"], Settings())
    records = [
        {"entity": "cam-1", "ts": TS, "object": "boat", "count": 3, "confidence": 0.9, "zone": "<script>"},
        {"entity": "cam-1", "ts": TS, "object": "dragon", "count": 3, "confidence": 0.9},
        {"entity": "cam-1", "ts": TS, "object": "boat", "count": 2.5, "confidence": 0.9},
        {"entity": "cam-1", "ts": TS, "object": "boat", "count": True, "confidence": 0.9},
        {"entity": "cam-1", "ts": TS * 1000, "object": "boat", "count": 1, "confidence": 0.5},
        {"entity": "", "ts": TS, "object": "boat", "count": 1, "confidence": 0.5},
        ["not", "an", "object"],
        {"source": "sonar", "entity": "cam-1", "ts": TS, "object": "boat", "count": 1, "confidence": 0.5},
    ]
    batch, rejects = v.validate(records)
    assert batch.positions.tolist() == [0, 4]
    assert batch.strings["zone"] == ["<script>", None]
    assert batch.ts.tolist() == [TS, TS]  # epoch milliseconds read as such
    assert [(r.position, r.reason) for r in rejects] == [
        (1, "out_of_range"),
        (2, "out_of_range"),
        (3, "wrong_type"),
        (5, "out_of_range"),
        (6, "not_object"),
        (7, "unknown_source"),
    ]


def test_time_formats():
    assert parse_time("2026-01-01T08:00:00+08:00") == TS
    assert parse_time("2026-01-01T00:00:00") == TS  # naive means UTC
    assert parse_time(TS, "epoch_ms") == TS / 1000
    assert parse_time("2026-01-01", "epoch_s") is None
    assert parse_time(float("nan")) is None


def test_a_feed_declares_its_zone_its_missing_values_and_numbers_written_as_text(tmp_path):
    """A Beijing feed as published: local times without a zone, "NA" for a reading the station did not make,
    numbers in quotes. Its records are read as it means them; an unknown zone is refused at load."""
    (tmp_path / "station.toml").write_text(
        'name = "station"\ntopic = "telemetry.station"\ntimezone = "Asia/Shanghai"\nmissing = ["NA", ""]\n'
        "numbers_as_text = true\n"
        '[fields.pm25]\ntype = "float"\nmin = 0\n[fields.so2]\ntype = "float"\nmin = 0\n'
        '[fields.site]\ntype = "string"\n'
    )
    source = load_sources(Settings(sources_dirs=[tmp_path]))["station"]
    batch, rejects = Validator(source, Settings()).validate(
        [
            {"entity": "NA", "ts": "2026-01-01 08:00:00", "pm25": "NA", "so2": "12.5", "site": ""},
            {"entity": "s2", "ts": "2026-01-01T08:00:00+08:00", "pm25": 3, "so2": "lots"},
            {"entity": "s3", "ts": "NA", "pm25": 3},
        ]
    )
    assert batch.entities == ["NA"] and batch.ts.tolist() == [TS]  # 08:00 in Beijing is midnight UTC
    assert np.isnan(batch.columns["pm25"][0]) and batch.columns["so2"].tolist() == [12.5]
    assert batch.strings["site"] == [None]
    assert [(r.position, r.reason) for r in rejects] == [(1, "wrong_type"), (2, "bad_timestamp")]
    assert Validator(load_sources(Settings())["air"], Settings()).validate([{"entity": "a", "ts": TS, "pm25": "3"}])[1]
    (tmp_path / "station.toml").write_text(
        (tmp_path / "station.toml").read_text().replace("Asia/Shanghai", "Asia/Peking-ish")
    )
    with pytest.raises(SourceError, match=r"station.toml: timezone: .*unknown time zone 'Asia/Peking-ish'"):
        load_sources(Settings(sources_dirs=[tmp_path]))


@pytest.mark.parametrize("fmt", ["auto", "epoch_s", "epoch_ms", "iso8601"])
def test_a_batch_of_numeric_times_reads_as_one_record_at_a_time(fmt):
    """All-number times take a vectorised path; one odd record sends the batch one record at a time."""
    metric = load_sources(Settings())["metric"].model_copy(update={"time_format": fmt})
    v, rng = Validator(metric, Settings()), random.Random(7)
    times = [
        TS + rng.randint(0, 10**6),
        float(TS) + rng.random(),
        TS * 1000 + 5,
        float(TS * 1000),
        0,
        -TS,
        float("nan"),
        float("inf"),
        -float("inf"),
        10**400,
        1e300,
        TS * 10**6,
    ]
    records = [{"entity": f"m{i}", "ts": t, "value": 1.0} for i, t in enumerate(times)]
    fast = v.validate(records)
    slow = v.validate([*records, {"entity": "m", "ts": "2026-01-01T00:00:00Z", "value": 1.0}])
    assert fast[0].positions.tolist() == slow[0].positions.tolist()[: len(fast[0])]
    assert fast[0].ts.tolist() == slow[0].ts.tolist()[: len(fast[0])]
    assert [(r.position, r.reason) for r in fast[1]] == [
        (r.position, r.reason) for r in slow[1] if r.position < len(records)
    ]


def test_simulator_is_seeded_and_realistic():
    def first(seed):
        sim = CitySimulator(entities=300, seed=seed, start_ts=TS)
        ticks = sim.ticks()
        return [next(ticks) for _ in range(60)]

    a, b, c = first(1), first(1), first(2)
    assert a == b and a != c
    records = [r for tick in a for r in tick]
    reg = load_sources(Settings())
    for name in ("power", "water", "gps", "video", "air"):
        mine = [r for r in records if r["source"] == name]
        _batch, rejects = Validator(reg[name], Settings()).validate(mine)
        assert mine and not rejects, (name, rejects[:3])
    ts = np.array([r["ts"] for r in records])
    assert ts.min() >= TS and ts.max() < TS + 600
