"""``warden tokens`` (API and console tokens with roles) and ``warden audit`` (who changed what, when)."""

from __future__ import annotations

import typer
from rich.table import Table

from agents.access.tokens import ROLES, TokenError, TokenStore
from agents.cli.support import audit, console, fail, login_name, with_redis
from agents.present.local_time import LocalClock
from settings import get_settings

tokens_cli = typer.Typer(help="Access tokens for the API and console, each with a role.", no_args_is_help=True)


def _when(ts: float) -> str:
    """The city's local time (``WARDEN_TIMEZONE``)."""
    return LocalClock(get_settings().timezone).text(ts)


@tokens_cli.command("create")
def tokens_create(
    role: str = typer.Option(..., "--role", help=", ".join(ROLES)),
    name: str = typer.Option(..., "--name", help="whose token (a person or system); shown in the audit trail"),
) -> None:
    """Create a token and print it once (only its hash is kept)."""

    async def work(r):
        token = await TokenStore(r, get_settings()).create(name, role, login_name())
        await audit(r, "token.create", name.strip(), {"role": role})
        return token

    try:
        token = with_redis(work)
    except TokenError as exc:
        fail(str(exc))
    console.print(f"[bold]{token}[/]", highlight=False, soft_wrap=True)
    console.print(f"[dim]{name.strip()} ({role}); this is the only time the token is shown.[/]", highlight=False)


@tokens_cli.command("list")
def tokens_list() -> None:
    """Every token's name, role and creation (never the token)."""
    rows = with_redis(lambda r: TokenStore(r, get_settings()).listing())
    table = Table(title=f"{len(rows)} tokens")
    for col in ("name", "role", "created", "by"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["name"], row["role"], _when(row["created_at"]), row["created_by"])
    console.print(table)


@tokens_cli.command("revoke")
def tokens_revoke(name: str = typer.Argument(..., help="the token's name")) -> None:
    """Revoke a token: requests with it are refused from now on, and console sessions it opened end."""
    from agents.access.sessions import Sessions

    async def work(r):
        await TokenStore(r, get_settings()).revoke(name)
        await Sessions(r).end_all(name)
        await audit(r, "token.revoke", name)

    try:
        with_redis(work)
    except TokenError as exc:
        fail(str(exc))
    console.print(f"revoked {name}", highlight=False)


def audit_cmd(
    limit: int = typer.Option(50, min=1, max=1000, help="entries, newest first"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object per line"),
) -> None:
    """The audit trail: who changed what, when, through the API, console or CLI."""
    import orjson

    from agents.access.audit import Audit

    entries = with_redis(lambda r: Audit(r, get_settings()).recent(limit))
    if json_out:
        for e in entries:
            print(orjson.dumps(e).decode())
        return
    table = Table(title=f"{len(entries)} audit entries")
    for col in ("at", "who", "role", "via", "action", "target"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(_when(e["at"]), e["who"], e["role"], e["via"], e["action"], e["target"])
    console.print(table)


def register(cli: typer.Typer) -> None:
    cli.add_typer(tokens_cli, name="tokens")
    cli.command("audit")(audit_cmd)
