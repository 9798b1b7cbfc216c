"""The alert lifecycle: open -> acknowledged -> dispatched -> resolved, or false_positive.

>>> next_status("open", "acknowledge")
'acknowledged'
>>> next_status("false_positive", "resolve")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
models.lifecycle.TransitionError: cannot resolve an alert that is false_positive (resolve needs ...)
"""

from __future__ import annotations

# Statuses an alert is still being handled in, and those that close it.
ACTIVE = ("open", "acknowledged", "dispatched")
CLOSED = ("resolved", "false_positive")
STATUSES = ACTIVE + CLOSED

# action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "acknowledge": (("open",), "acknowledged"),
    "dispatch": (("open", "acknowledged"), "dispatched"),
    "resolve": (ACTIVE, "resolved"),
    "false_positive": (ACTIVE, "false_positive"),
}

# Staff marks that are training labels: was the alert a real situation?
LABELS = {"resolved": True, "false_positive": False}


class TransitionError(ValueError):
    """A lifecycle step that is not allowed from the alert's current status."""


def next_status(current: str, action: str) -> str:
    """The status ``action`` leads to from ``current``, or a :class:`TransitionError` saying why not."""
    if action not in TRANSITIONS:
        raise TransitionError(f"unknown action {action!r}; known: {', '.join(TRANSITIONS)}")
    allowed, to = TRANSITIONS[action]
    if current not in allowed:
        raise TransitionError(
            f"cannot {action.replace('_', ' ')} an alert that is {current} "
            f"({action} needs {', '.join(allowed[:-1])} or {allowed[-1]})"
            if len(allowed) > 1
            else f"cannot {action} an alert that is {current} ({action} needs {allowed[0]})"
        )
    return to
