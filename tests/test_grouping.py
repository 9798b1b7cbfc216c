"""Groups: one situation seen by many entities is one alert listing them, replayed as live."""

from __future__ import annotations

from cases import LOCAL_MIDNIGHT, STATIONS, station_sites

from models.catalog import load_sources
from replay.offline import replay
from replay.pipeline import AlertPipeline
from settings import Settings


def test_a_regional_episode_is_one_alert_with_its_stations_and_a_local_one_stays_its_stations():
    """Five stations polluted together for four hours are one ``aqi_polluted`` alert listing them (a sixth,
    polluted right after, joins it); a source near that station, far above its neighbours, is its own alert."""
    regional = {"st-0", "st-1", "st-2", "st-3", "st-5"}
    records = []
    for k in range(12 * 60):
        hour = k // 60
        for e in STATIONS:
            pm25 = 40.0 + (k % 7)
            if e in regional and 2 <= hour < 6:
                pm25 = 160.0 + (k % 5)
            if e == "st-4" and 4 <= hour < 10:  # from the episode's end, a source near st-4
                pm25 = 150.0 + (k % 3)
            records.append({"source": "air", "entity": e, "ts": LOCAL_MIDNIGHT + 60 * k + 1, "pm25": pm25})
    settings = Settings()
    pipeline = AlertPipeline(settings, station_sites())
    replay(records, load_sources(settings), settings, refdata=station_sites(), on_signal=pipeline.add)
    alerts = {(a["kind"], a["entity"]): a for a in pipeline.scored()}
    assert set(alerts) == {("aqi_polluted", "all"), ("pm25_above_neighbours", "st-4")}
    episode = alerts[("aqi_polluted", "all")]
    assert sorted(episode["members"]) == sorted([*regional, "st-4"]) and episode["count"] >= 6
    assert alerts[("pm25_above_neighbours", "st-4")]["members"] == []
