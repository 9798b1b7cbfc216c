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
    out = subprocess.run([sys.executable, "-m", "agents.cli", "bench", "--records", "20000",
                          "--entities", "2000", "--json"], cwd=ROOT, env=env, capture_output=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    figures = orjson.loads(out.stdout.decode().strip().splitlines()[-1])
    for key in ("records_per_s", "raw_records_per_s", "p50_latency_ms", "p99_latency_ms", "bytes_per_entity"):
        assert figures[key] and figures[key] > 0, key
    assert figures["alerts_measured"] == 200
    assert figures["p50_latency_ms"] <= figures["p99_latency_ms"]
    passes = figures["raw_passes_per_s"]
    assert len(passes) == 3 and figures["raw_records_per_s"] == sorted(passes)[1]   # the median pass
    assert figures["signals"] >= 200 and figures["alert_changes"] >= 200   # each probe raised one at least
