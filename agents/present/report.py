"""The daily report: a self-contained HTML page (inline styles and SVG, nothing fetched) of one local day.

Counts, the 30-day trend per kind, the day's top places and kinds, late departments, notable incidents with
their evidence, and enforcement advice for the day's leading kinds. :func:`print_pdf` prints it with
Chromium (headless, offline).
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from agents.present.advice import concentrations
from agents.present.alert_view import AlertView
from agents.present.summary import summarise
from agents.present.wording import Wording
from models.lifecycle import ACTIVE
from models.signal import SEVERITIES
from state.refdata.reference import RefData

NOTABLE = 12
TREND_DAYS = 30

_templates = Environment(loader=PackageLoader("agents.present"), autoescape=select_autoescape(["html", "j2"]))


def day_bounds(day: date, view: AlertView) -> tuple[float, float]:
    """The epoch seconds of the local day's start and end."""
    start = datetime(day.year, day.month, day.day, tzinfo=view.clock.zone)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


def build(alerts: list[dict], day: date, view: AlertView, ref: RefData, language: str, figures: dict) -> dict:
    """What the report says about ``day``, from the alerts raised over the 30 days up to its end (each with its
    ``raised_at``) and the per-department ``figures`` (:meth:`Accountability.figures`)."""
    start, end = day_bounds(day, view)
    words = Wording.of(language)
    alerts = [a for a in alerts if a["raised_at"] < end]
    summary = summarise(alerts, end - 1, view.clock, TREND_DAYS)
    today = [a for a in alerts if a["raised_at"] >= start]
    kinds = Counter(a["kind"] for a in today)
    places = Counter(((a.get("area") or {}).get("town") or words.term("ui", "no_area")) for a in today)
    notable = sorted(today, key=lambda a: (-SEVERITIES.index(a["severity"]), -a["count"], a["raised_at"]))[:NOTABLE]
    late = sorted(
        ({"department": words.text["departments"].get(d, d), **f} for d, f in figures.items() if f["escalated"]),
        key=lambda f: (-f["overdue"], -f["escalated"]),
    )
    return {
        "day": day.isoformat(),
        "language": language,
        "timezone": str(view.clock.zone),
        "words": words,
        "raised": len(today),
        "by_severity": Counter(a["severity"] for a in today),
        "by_status": Counter(a["status"] for a in today),
        "overdue": sum(bool(a.get("escalation")) and a["status"] in ACTIVE for a in today),
        "kinds": [(words.title(k), n) for k, n in kinds.most_common(10)],
        "places": places.most_common(10),
        "trends": [
            {"title": words.title(k), "total": sum(c), "points": _polyline(c, 300, 40), "last": c[-1]}
            for k, c in summary["trend"].items()
        ],
        "trend_days": (summary["days"][0], summary["days"][-1]),
        "late": late,
        "notable": [{**a, "display": view.display(a, language)} for a in notable],
        "advice": [
            concentrations(alerts, k, ref, view.clock) | {"title": words.title(k)} for k, _ in kinds.most_common(3)
        ],
    }


def render(report: dict) -> str:
    """The report as one HTML document."""
    return _templates.get_template("report.html.j2").render(**report)


def print_pdf(html: Path, pdf: Path, chromium: str | None = None) -> None:
    """Print ``html`` to ``pdf`` with headless Chromium (``chromium`` or the one on the PATH); RuntimeError if
    there is none or it fails."""
    binary = chromium or shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if binary is None:
        raise RuntimeError("no Chromium to print the PDF with (install chromium, or pass --no-pdf)")
    done = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            html.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0 or not pdf.exists():
        raise RuntimeError(f"Chromium could not print {html}: {done.stderr.strip()[-500:]}")


def _polyline(counts: list[int], width: float, height: float) -> str:
    top, last = max(1, *counts), max(1, len(counts) - 1)
    return " ".join(f"{i / last * width:.1f},{height - n / top * (height - 4):.1f}" for i, n in enumerate(counts))
