"""An alert as a person reads it: its ``display``, in their language, times in the city's zone.

The API and the console's feed add it to every alert they serve (the alert itself stays as machines read
it); the CLI and webhooks take the parts they print.

>>> from models.catalog import load_sources
>>> view = AlertView("Asia/Shanghai", load_sources())
>>> alert = {"kind": "pm25_hourly_over_limit", "source": "air", "status": "resolved", "severity": "major",
...          "ts": "2026-01-01T00:00:00.000Z", "evidence": {"field": "pm25", "mean": 145.81}}
>>> d = view.display(alert, "zh-CN")
>>> d["title"], d["status"], d["ts"], d["evidence"][1]
('PM2.5小时浓度超标', '已办结', '2026-01-01 08:00:00', ['均值', '145.8 µg/m³'])
>>> d["steps"]["acknowledge"]
'当前状态为“已办结”，不能确认：需处于待处理'
"""

from __future__ import annotations

from agents.present.evidence import EvidenceText
from agents.present.local_time import LocalClock
from agents.present.wording import Wording
from models.lifecycle import TRANSITIONS
from streams.registry import Registry

TIMES = ("ts", "first_seen", "last_seen")


class AlertView:
    """Builds alerts' ``display`` for the sources of ``registry`` (their units) in zone ``timezone``."""

    def __init__(self, timezone: str, registry: Registry):
        self.clock = LocalClock(timezone)
        self.units = {name: {f: spec.unit for f, spec in s.fields.items() if spec.unit} for name, s in registry.items()}

    def evidence(self, evidence: dict, source: str, language: str) -> list[list[str]]:
        return EvidenceText(Wording.of(language), self.clock, self.units.get(source, {})).lines(evidence)

    def display(self, alert: dict, language: str) -> dict:
        """Title, description, statuses, local times, evidence lines, history and the lifecycle steps open
        to the alert now (``None``) or not (the reason), in ``language``."""
        w = Wording.of(language)
        title, description = w.kind(alert["kind"])
        area = alert.get("area") or {}
        action = alert.get("action") or {}
        out = {
            "language": language,
            "title": title,
            "description": description,
            "severity": w.term("severity", alert.get("severity", "info")),
            "status": w.term("status", alert.get("status", "open")),
            **{t: self.clock.text(alert[t]) for t in TIMES if alert.get(t)},
            "area": " / ".join(area[k] for k in ("city", "county", "town") if area.get(k)),
            "departments": [w.text["departments"].get(d, d) for d in alert.get("departments") or []],
            "action": w.text["advice"].get(action.get("what", ""), action.get("what", "")),
            "evidence": self.evidence(alert.get("evidence") or {}, alert.get("source", ""), language),
            "steps": self.steps(alert.get("status", "open"), w),
        }
        if deadlines := alert.get("deadlines"):
            out["deadlines"] = {k: self.clock.text(v) for k, v in deadlines.items()}
        if escalation := alert.get("escalation"):
            out["escalation"] = self.escalation(escalation, w)
        if "history" in alert:
            out["history"] = [self.step(h, alert.get("source", ""), w, language) for h in alert["history"]]
        return out

    def escalation(self, escalation: dict, w: Wording) -> str:
        """What an escalation says: to which level (and its area), for which missed deadlines."""
        area = f" {escalation['area']}" if escalation.get("area") else ""
        reasons = ", ".join(w.term("words", f"{r}_late") for r in escalation["reasons"])
        return w.term("ui", "escalated", level=w.term("words", escalation["to"]), area=area, reasons=reasons)

    def steps(self, status: str, w: Wording) -> dict[str, str | None]:
        """Each lifecycle action: None where allowed from ``status``, else why not."""
        return {
            action: None
            if status in allowed
            else w.term(
                "ui",
                "needs_status",
                status=w.term("status", status),
                action=w.term("actions", action),
                allowed=w.term("ui", "and_or").join(w.term("status", s) for s in allowed),
            )
            for action, (allowed, _) in TRANSITIONS.items()
        }

    def step(self, h: dict, source: str, w: Wording, language: str) -> dict:
        """One history entry: a person's step, or the engine re-opening the alert with the signal that did."""
        out = {
            "at": self.clock.text(h["at"]),
            "by": w.term("ui", "by_engine") if h.get("by") == "engine" else h.get("by", ""),
            "action": w.term("actions", h["action"]),
            "from": w.term("status", h.get("from", "")),
            "to": w.term("status", h.get("to", "")),
            "note": h.get("note", ""),
            "department": w.text["departments"].get(h.get("department", ""), h.get("department", "")),
        }
        if escalation := h.get("escalation"):
            out["note"] = self.escalation(escalation, w)
        if signal := h.get("signal"):
            out["signal"] = self.evidence(signal.get("evidence") or {}, source, language)
        return out
