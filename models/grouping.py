"""Groups: one incident for one situation seen by many entities (a regional smog episode, the meters of one site),
and episodes: one kind of situation for several rules (every pollutant's daily limit).

A source declares which alert kinds group and how (``groups``: shell patterns of kinds to a scope):
``"source"`` gathers every entity of the source into the group ``all`` (a city's stations in one
episode), ``"site"`` the devices the reference data places at one site into ``site:<id>`` (an entity at
no site stays on its own). A grouped signal keeps its entity and names its group; the incident it
joins names the group and lists its members (:mod:`models.incidents`). A source's ``episodes`` map kinds
(shell patterns) to the one kind their alerts take.

>>> from state.refdata.reference import RefData
>>> groups = Groups({"aqi_*": "source", "kw_*": "site"})
>>> groups.of("aqi_polluted", "st-1", RefData.empty()), groups.of("kw_consumption_abnormal", "m-1", RefData.empty())
('all', '')
>>> groups.of("silent", "st-1", RefData.empty())
''
>>> Episodes({"*_daily_over_limit": "daily_limit_exceeded"})("no2_daily_over_limit")
'daily_limit_exceeded'
"""

from __future__ import annotations

from models.kind_patterns import KindPatterns
from state.refdata.reference import RefData

EVERY_ENTITY = "all"


class Episodes:
    """The kind a signal's alert takes: its own, or the situation its source declares it part of."""

    def __init__(self, kinds: dict[str, str]):
        self.kinds = kinds
        self._kind = KindPatterns(kinds, default="")

    def __call__(self, kind: str) -> str:
        return self._kind(kind) or kind


class Groups:
    """Which group (if any) a signal of a kind about an entity joins."""

    def __init__(self, scopes: dict[str, str]):
        self.scopes = scopes
        self.scope = KindPatterns(scopes, default="")  # a kind's scope: "source", "site" or "" (none)

    def of(self, kind: str, entity: str, ref: RefData) -> str:
        """The group a signal of ``kind`` about ``entity`` joins ("" for none)."""
        scope = self.scope(kind)
        if scope == "source":
            return EVERY_ENTITY
        if scope == "site":
            site = ref.device_site.get(entity)
            return f"site:{site.id}" if site is not None else ""
        return ""
