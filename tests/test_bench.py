"""`warden bench` runs end to end and reports every figure."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_bench_json_reports_all_figures(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "WARDEN_DATA_DIR": str(tmp_path), "WARDEN_PARTITIONS": "4"}
    out = subprocess.run(
        [sys.executable, "-m", "agents.cli", "bench", "--records", "20000", "--entities", "2000", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    figures = orjson.loads(out.stdout.decode().strip().splitlines()[-1])
    for key in ("records_per_s", "raw_records_per_s", "p50_latency_ms", "p99_latency_ms", "bytes_per_entity"):
        assert figures[key] and figures[key] > 0, key
    assert figures["alerts_measured"] == 200
    assert figures["p50_latency_ms"] <= figures["p99_latency_ms"]
    passes = figures["raw_passes_per_s"]
    assert len(passes) == 3 and figures["raw_records_per_s"] == sorted(passes)[1]  # the median pass
    assert figures["signals"] >= 200 and figures["alert_changes"] >= 200  # each probe raised one at least
    # The log the worker wrote, replayed in-process: everything it took (backlog and latency load), the same alerts.
    assert figures["replay_records"] >= 20000 and figures["replay_records_per_s"] > 0
    differ = figures["replay_differ_kinds"]
    assert figures["alerts_live"] >= 200 and figures["alerts_replayed"] == figures["alerts_live"], differ
    assert figures["replay_alerts_differ"] == 0 and differ == {}
    # The metric source alone, a fifth of the records: one record per message from a plain client, and batched.
    for mode in ("one_record", "metric_batched"):
        run = figures[mode]
        assert run["records"] == 4000 and run["entities"] == 400 and run["forwarded"] == 0, mode
        assert run["records_per_s"] > 0 and run["worker_rss_mb"] > 0 and run["bytes_per_entity"] > 0, mode
    assert figures["metric_replay_records_per_s"] > 0


def test_scale_out_steps_share_the_backlog_and_raise_the_same_alerts(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "WARDEN_DATA_DIR": str(tmp_path), "WARDEN_PARTITIONS": "2"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "agents.cli",
            "bench",
            "--records",
            "20000",
            "--entities",
            "2000",
            "--workers",
            "1,2",
            "--json",
            "--plot",
            str(tmp_path / "scale.png"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    figures = orjson.loads(out.stdout.decode().strip().splitlines()[-1])
    one, two = figures["steps"]
    assert (one["workers"], two["workers"]) == (1, 2)
    assert (one["workers_reporting"], two["workers_reporting"]) == (1, 2)  # each worker took a partition
    assert one["signals"] > 0 and one["signals"] == two["signals"]  # same records, same alerts
    assert one["alerts"] > 0 and (one["alerts"], one["alerts_digest"]) == (two["alerts"], two["alerts_digest"])
    for step in (one, two):
        assert step["records_per_s"] > 0 and step["cores"]["workers"] > 0
        assert step["cores"]["broker"] is not None and step["cores"]["redis"] is not None  # both local here
        assert step["start_skew_s"] <= step["span_s"]
    assert one["speedup"] == 1.0
    assert (tmp_path / "scale.png").read_bytes().startswith(b"\x89PNG")


def test_scale_out_refuses_more_workers_than_partitions(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "WARDEN_DATA_DIR": str(tmp_path), "WARDEN_PARTITIONS": "2"}
    out = subprocess.run(
        [sys.executable, "-m", "agents.cli", "bench", "--records", "1000", "--workers", "1,3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "3 workers for 2 partitions" in out.stderr.decode()


def test_a_plot_without_a_scale_out_is_refused_not_ignored(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "WARDEN_DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "agents.cli", "bench", "--records", "1000", "--plot", str(tmp_path / "scale.png")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "give --workers too" in out.stderr.decode()
    assert not (tmp_path / "scale.png").exists()
