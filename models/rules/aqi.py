"""The hourly Air Quality Index (HJ 633-2012) and its category, per station and closed hour.

IAQI of each pollutant by linear interpolation between breakpoints; the AQI
is the largest IAQI and its pollutant is the primary one. As in China's
real-time hourly publication, SO2/NO2/CO/O3 use their 1-hour breakpoints and
PM2.5/PM10 their 24-hour breakpoints on the hourly mean. An alert is raised
for an hour whose AQI reaches the source's ``[aqi] alert_from`` (default 151,
"moderately polluted").

>>> round(float(iaqi("pm25", np.array([75.0, 115.0, 500.0, 0.0]))[1]), 1), category(175)
(150.0, 'moderately polluted')
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from models.base import BatchContext, Detector, DetectorSettings
from models.signal import Signal
from state.entity_state import EntityState
from streams.registry import Source
from streams.validation import Batch

MODEL = "aqi@1"
LEVELS = np.array([0, 50, 100, 150, 200, 300, 400, 500], dtype=np.float64)
BREAKPOINTS = {  # concentration at each IAQI level (µg/m³; CO in mg/m³)
    "so2": [0, 150, 500, 650, 800, 1600, 2100, 2620],  # > 800 uses the 24-hour table's upper part
    "no2": [0, 100, 200, 700, 1200, 2340, 3090, 3840],
    "co": [0, 5, 10, 35, 60, 90, 120, 150],
    "o3": [0, 160, 200, 300, 400, 800, 1000, 1200],
    "pm10": [0, 50, 150, 250, 350, 420, 500, 600],
    "pm25": [0, 35, 75, 115, 150, 250, 350, 500],
}
CATEGORIES = (
    (50, "excellent"),
    (100, "good"),
    (150, "lightly polluted"),
    (200, "moderately polluted"),
    (300, "heavily polluted"),
    (float("inf"), "severely polluted"),
)
SEVERITY = {"moderately polluted": "warning", "heavily polluted": "major", "severely polluted": "critical"}


class AqiSettings(DetectorSettings):
    """The ``[aqi]`` table: when the hourly AQI raises an alert."""

    alert_from: float = Field(151.0, gt=0, le=500, description="AQI from which an hour is alerted")


def iaqi(pollutant: str, conc: np.ndarray) -> np.ndarray:
    """Individual AQI of concentrations (NaN stays NaN; above the table caps at 500)."""
    return np.interp(conc, BREAKPOINTS[pollutant], LEVELS)


def category(aqi: float) -> str:
    return next(name for top, name in CATEGORIES if aqi <= top)


class Aqi(Detector):
    """Computes each station's hourly AQI when the hour closes; alerts on polluted hours."""

    name = "aqi"
    settings_model = AqiSettings
    windows = {"1h": 1}

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        self.pollutants = [p for p in BREAKPOINTS if p in state.windowed]
        if not self.pollutants:
            raise ValueError(f"source {source.name!r}: the aqi detector needs windowed pollutant fields")
        self.alert_from = self.settings.alert_from
        state.add_marker("aqi.closed")

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        return self._judge(rows, state)

    def sweep(self, state: EntityState, now: float) -> list[Signal]:
        """The hours an idle feed's clock (``now``) has closed: a station gone quiet is judged on its last."""
        return self._judge(state.unjudged("1h", state.store["aqi.closed"], now), state, now)

    def _judge(self, rows: np.ndarray, state: EntityState, now: float | None = None) -> list[Signal]:
        alerts = []
        seconds, _ = state.windows["1h"]
        for r, b in state.newly_closed(rows, "1h", state.store["aqi.closed"], now):
            means = state.window_means("1h", r, b)
            scores = np.column_stack([iaqi(p, means[:, state.windowed.index(p)]) for p in self.pollutants])
            valid = ~np.isnan(scores).all(axis=1)
            aqi = np.where(valid, np.nanmax(np.where(np.isnan(scores), -1, scores), axis=1), np.nan)
            for i in np.flatnonzero(valid & (aqi >= self.alert_from)):
                value = float(np.ceil(aqi[i]))
                name = category(value)
                primary = self.pollutants[int(np.nanargmax(scores[i]))]
                alerts.append(
                    Signal.new(
                        source=self.source.name,
                        kind="aqi_polluted",
                        entity=state.slots.entities[r[i]],
                        ts=float((b[i] + 1) * seconds),
                        window_start=float(b[i] * seconds),
                        window_s=float(seconds),
                        score=min(1.0, value / 500.0),
                        severity=SEVERITY.get(name, "warning"),
                        model=MODEL,
                        evidence={
                            "aqi": value,
                            "category": name,
                            "primary": primary,
                            "iaqi": {
                                p: round(float(s), 1) for p, s in zip(self.pollutants, scores[i]) if not np.isnan(s)
                            },
                        },
                    )
                )
        return alerts
