"""The words people read: both languages complete, every declared rule worded, local times in the city's zone."""

from __future__ import annotations

import tomllib
from importlib.resources import files

import pytest

from agents.present.alert_view import AlertView
from agents.present.local_time import LocalClock
from agents.present.wording import LANGUAGES, Wording
from models.catalog import load_sources
from settings import Settings
from streams.privacy import mask_alert


def _text(language: str) -> dict:
    return tomllib.loads(files("agents.present").joinpath(f"text/{language}.toml").read_text("utf-8"))


def test_both_languages_word_the_same_things():
    zh, en = _text("zh-CN"), _text("en")
    assert set(zh) == set(en)
    for section in zh:
        assert set(zh[section]) == set(en[section]), section
        if section == "kinds":
            assert all(set(v) == {"title", "description"} for v in [*zh[section].values(), *en[section].values()])


def test_every_declared_rule_and_episode_reads_in_both_languages():
    kinds = set()
    for source in load_sources(Settings()).values():
        kinds |= {r["kind"] for r in source.tables.get("rules", [])}
        kinds |= set(source.episodes.values()) if source.episodes else set()
    assert {"voltage_low", "pressure_low", "no2_hourly_over_limit", "daily_limit_exceeded"} <= kinds
    for language in LANGUAGES:
        assert sorted(k for k in kinds if not Wording.of(language).knows(k)) == [], language
    assert Wording.of("zh-CN").title("so2_daily_over_limit") == "二氧化硫日均浓度超标"


def test_times_are_local_across_a_zone_change_and_the_zone_is_checked():
    new_york = LocalClock("America/New_York")  # daylight saving: the offset follows the date
    assert (new_york.offset(1767225600.0), new_york.offset(1783000000.0)) == ("UTC-05:00", "UTC-04:00")
    with pytest.raises(ValueError, match="unknown time zone"):
        Settings(timezone="Mars/Olympus")


def test_a_viewers_masked_alert_stays_masked_in_its_display():
    alert = {
        "kind": "dwell",
        "source": "gps",
        "entity": "苏E·00042",
        "status": "open",
        "severity": "major",
        "evidence": {"plate": "苏E·00042", "dwell_s": 1900.0},
    }
    shown = AlertView("Asia/Shanghai", load_sources(Settings())).display(mask_alert(alert), "en")
    assert "00042" not in str(shown) and ["standing for", "31 min 40 s"] in shown["evidence"]
