"""The hourly Air Quality Index (HJ 633-2012) and its category, per station and closed hour.

IAQI of each pollutant by linear interpolation between breakpoints, rounded
up to a whole number; the AQI is the largest IAQI and every pollutant at it
is a primary one (any pollutant the station reported is enough). As in China's
real-time hourly publication, SO2/NO2/CO/O3 use their 1-hour breakpoints and
PM2.5/PM10 their 24-hour breakpoints on the hourly mean. An hour is polluted
when its AQI reaches the source's ``[aqi] alert_from`` (default 151,
"moderately polluted"); an alert is raised for each polluted hour that ends
a streak of ``min_hours`` (default 3) consecutive ones: an episode, not a
passing plume.

>>> iaqi("pm25", np.array([75.0, 115.0, 115.2, 500.0])).tolist(), category(175)
([100.0, 150.0, 151.0, 500.0], 'moderately polluted')
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from models.base import BatchContext, Detector, DetectorSettings
from models.signal import Signal
from models.streak import Streak
from state.entity_state import EntityState
from streams.registry import Source
from streams.validation import Batch

MODEL = "aqi@2"
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

    alert_from: float = Field(151.0, gt=0, le=500, description="AQI from which an hour is polluted")
    min_hours: int = Field(3, ge=1, le=24, description="consecutive polluted hours before an alert")


def iaqi(pollutant: str, conc: np.ndarray) -> np.ndarray:
    """Individual AQI of concentrations, rounded up to a whole number as HJ 633-2012 publishes it (NaN stays
    NaN; above the table caps at 500). The float32 windows' last bits are rounded off first, so a mean exactly
    on a breakpoint is not pushed one index point up."""
    exact = np.interp(np.round(conc.astype(np.float64), 3), BREAKPOINTS[pollutant], LEVELS)
    return np.ceil(np.round(exact, 6))


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
        self.streak = Streak(state.store, "aqi")

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
            aqi = np.max(np.nan_to_num(scores, nan=-1.0), axis=1)
            hours = self.streak.update(r, b, aqi >= self.alert_from)
            for i in np.flatnonzero(hours >= self.settings.min_hours):
                value = float(aqi[i])
                name = category(value)
                primary = [p for p, s in zip(self.pollutants, scores[i]) if s == value]
                alerts.append(
                    Signal.new(
                        source=self.source.name,
                        kind="aqi_polluted",
                        entity=state.slots.name(r[i]),
                        ts=float((b[i] + 1) * seconds),
                        window_start=float(b[i] * seconds),
                        window_s=float(seconds),
                        score=min(1.0, value / 500.0),
                        severity=SEVERITY.get(name, "warning"),
                        model=MODEL,
                        evidence={
                            "aqi": value,
                            "category": name,
                            "hours": int(hours[i]),
                            "primary": primary,
                            "iaqi": {p: int(s) for p, s in zip(self.pollutants, scores[i]) if not np.isnan(s)},
                        },
                    )
                )
        return alerts
