"""The ``warden`` command line."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from settings import get_settings
from streams.registry import SourceError, load_registry

cli = typer.Typer(help="Warden: a real-time warning engine for a city's operations centre.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
sources_cli = typer.Typer(help="Declared sensor sources.", no_args_is_help=True)
cli.add_typer(sources_cli, name="sources")
evaluate_cli = typer.Typer(help="Score detectors against labelled data.", no_args_is_help=True)
cli.add_typer(evaluate_cli, name="evaluate")
refdata_cli = typer.Typer(help="Reference data: sites, vehicles, zones, routes, areas, units.", no_args_is_help=True)
cli.add_typer(refdata_cli, name="refdata")
alerts_cli = typer.Typer(help="Alerts: watch, list, show, and move them through their lifecycle.",
                         no_args_is_help=True)
cli.add_typer(alerts_cli, name="alerts")
console = Console()


def _registry():
    try:
        return load_registry(get_settings())
    except SourceError as exc:
        _fail(str(exc))


@sources_cli.command("list")
def sources_list() -> None:
    """Show every declared source: topic, fields, rules, detectors."""
    table = Table(title="Sources")
    for col in ("source", "topic", "fields (unit)", "windowed", "rules", "detectors", "declared in"):
        table.add_column(col)
    for s in _registry().values():
        fields = ", ".join(f"{n} ({f.unit})" if f.unit else n for n, f in s.fields.items())
        table.add_row(s.name, s.topic, fields, ", ".join(s.windowed_fields),
                      ", ".join(r.kind for r in s.rules), ", ".join(s.detectors), str(s.path))
    console.print(table)


def _redis():
    import redis.asyncio as aioredis

    settings = get_settings()
    if not settings.redis_url:
        _fail("no Redis configured: set WARDEN_REDIS_URL (`warden up` prints it)")
    return aioredis.Redis.from_url(settings.redis_url)


def _with_redis(work):
    """Run ``work(redis)`` (a coroutine function) against the configured Redis, with a clear error if down."""
    import redis.exceptions

    async def run():
        client = _redis()
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except redis.exceptions.ConnectionError as exc:
        _fail(f"cannot reach Redis at {get_settings().redis_url}: {exc}")


@refdata_cli.command("load")
def refdata_load(path: Path = typer.Argument(..., help="folder with areas.geojson, sites.csv, vehicles.csv, ...")) \
        -> None:
    """Validate a reference-data folder and store it; running workers pick it up within seconds."""
    from state import refstore
    from state.refdata import RefData, RefDataError

    try:
        ref = RefData.load_dir(path)
    except RefDataError as exc:
        _fail(str(exc))
    version = _with_redis(lambda r: refstore.save(r, ref))
    console.print(f"reference data version {version}: {_counted(ref.counts())}")


@refdata_cli.command("show")
def refdata_show() -> None:
    """The stored reference data's version and counts."""
    from state import refstore

    ref = _with_redis(refstore.load)
    console.print(f"reference data version {ref.version}: {_counted(ref.counts())}")


@refdata_cli.command("city")
def refdata_city(path: Path = typer.Argument(..., help="folder to write"),
                 entities: int = typer.Option(3000, help="as given to `warden simulate`"),
                 seed: int = typer.Option(42, help="as given to `warden simulate`")) -> None:
    """Write the simulated city's reference data (matches `warden simulate` with the same options)."""
    from streams.city import write_city
    from streams.simulator import CitySimulator

    counts = write_city(path, CitySimulator(entities=entities, seed=seed), seed)
    console.print(f"wrote {path}: {_counted(counts)}")


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {what}" for what, n in counts.items())


def _alert_row(a: dict) -> list[str]:
    area = a.get("area") or {}
    return [a["id"], a["status"], a["severity"], a["kind"], a["entity"], str(a["count"]), a["first_seen"],
            area.get("town") or area.get("county") or area.get("city") or "", ", ".join(a.get("departments") or [])]


def _alerts_table(title: str, alerts: list[dict]) -> Table:
    from agents.console import SEVERITY_STYLE

    table = Table(title=title)
    for col in ("id", "status", "severity", "kind", "entity", "count", "first seen", "town", "departments"):
        table.add_column(col, overflow="fold")
    for a in alerts:
        table.add_row(*_alert_row(a), style=SEVERITY_STYLE.get(a["severity"], ""))
    return table


@alerts_cli.command("list")
def alerts_list(status: str = typer.Option(None, help="open, acknowledged, dispatched, resolved, false_positive"),
                kind: str = typer.Option(None), area: str = typer.Option(None, help="city, county or town id"),
                severity: str = typer.Option(None), limit: int = typer.Option(50, min=1, max=1000),
                json_out: bool = typer.Option(False, "--json", help="one JSON object per line")) -> None:
    """Alerts, newest first."""
    import orjson

    from agents.alert_store import AlertStore

    alerts = _with_redis(lambda r: AlertStore(r, get_settings()).list(status=status, kind=kind, area=area,
                                                                      severity=severity, limit=limit))
    if json_out:
        for a in alerts:
            print(orjson.dumps(a).decode())
    else:
        console.print(_alerts_table(f"{len(alerts)} alerts", alerts))


@alerts_cli.command("show")
def alerts_show(alert_id: str = typer.Argument(...)) -> None:
    """One alert in full, with its history."""
    import orjson

    from agents.alert_store import AlertNotFound, AlertStore

    try:
        alert = _with_redis(lambda r: AlertStore(r, get_settings()).get(alert_id))
    except AlertNotFound as exc:
        _fail(str(exc), 1)
    print(orjson.dumps(alert, option=orjson.OPT_INDENT_2).decode())


@alerts_cli.command("tail")
def alerts_tail(history: int = typer.Option(10, help="show this many recent changes first")) -> None:
    """Follow alert changes live (Ctrl-C stops)."""
    import orjson

    from agents.alert_store import ALERT_STREAM

    async def follow(r):
        last = "$"
        for entry_id, fields in reversed(await r.xrevrange(ALERT_STREAM, count=history)):
            _print_change(orjson.loads(fields[b"alert"]))
            last = entry_id
        while True:
            for _, entries in await r.xread({ALERT_STREAM: last}, block=1000, count=500) or []:
                for last, fields in entries:
                    _print_change(orjson.loads(fields[b"alert"]))

    try:
        _with_redis(follow)
    except KeyboardInterrupt:
        pass


def _print_change(a: dict) -> None:
    from agents.console import SEVERITY_STYLE

    area = a.get("area") or {}
    console.print(f"{a['last_seen']}  {a['event']:<14} {a['severity']:<8} {a['kind']:<24} {a['entity']:<20} "
                  f"x{a['count']:<4} {area.get('town', '')}  {a['id']}",
                  style=SEVERITY_STYLE.get(a["severity"], ""), highlight=False, markup=False)


def _transition(alert_id: str, action: str, by: str, note: str, department: str | None = None) -> None:
    from agents.alert_store import AlertNotFound, AlertStore
    from models.lifecycle import TransitionError

    try:
        alert = _with_redis(lambda r: AlertStore(r, get_settings()).transition(alert_id, action, by, note, department))
    except (AlertNotFound, TransitionError) as exc:
        _fail(str(exc), 1)
    console.print(f"{alert_id}: {alert['transition']['from']} -> {alert['status']} by {by}", highlight=False)


def _who() -> str:
    import getpass

    return getpass.getuser()


BY = typer.Option(None, "--by", help="who is doing this (default: your login name)")
NOTE = typer.Option("", "--note", help="a note kept in the alert's history")


@alerts_cli.command("ack")
def alerts_ack(alert_id: str, by: str = BY, note: str = NOTE) -> None:
    """Acknowledge an open alert."""
    _transition(alert_id, "acknowledge", by or _who(), note)


@alerts_cli.command("dispatch")
def alerts_dispatch(alert_id: str, to: str = typer.Option(..., "--to", help="department it goes to"),
                    by: str = BY, note: str = NOTE) -> None:
    """Dispatch an alert to a department."""
    _transition(alert_id, "dispatch", by or _who(), note, to)


@alerts_cli.command("resolve")
def alerts_resolve(alert_id: str, by: str = BY, note: str = NOTE) -> None:
    """Resolve an alert (a true alert: a label for learning)."""
    _transition(alert_id, "resolve", by or _who(), note)


@alerts_cli.command("false-positive")
def alerts_false_positive(alert_id: str, by: str = BY, note: str = NOTE) -> None:
    """Mark an alert false positive (a label for learning)."""
    _transition(alert_id, "false_positive", by or _who(), note)


@cli.command()
def up() -> None:
    """Run the embedded broker and Redis in the foreground and print their URLs."""
    from agents.stack import embedded_stack
    from streams.topics import ensure_topics, warden_topics

    settings, registry = get_settings(), _registry()
    with embedded_stack(settings) as live:
        asyncio.run(ensure_topics(live.bootstrap_servers, warden_topics(live, registry)))
        console.print(f"broker  [bold]{live.broker}[/]\nredis   [bold]{live.redis_url}[/]")
        console.print(f"export WARDEN_BROKER={live.broker} WARDEN_REDIS_URL={live.redis_url} "
                      "WARDEN_EMBEDDED=true", soft_wrap=True, highlight=False)
        console.print("[dim]Ctrl-C stops both.[/]")
        _wait_for_signal()


@cli.command()
def worker(loglevel: str = typer.Option("info", help="crit, error, warn, info or debug")) -> None:
    """Run a worker against WARDEN_BROKER / WARDEN_REDIS_URL, or the embedded stack when unset."""
    import faust

    from agents.app import Worker
    from agents.stack import embedded_stack

    import gc

    # Fewer cyclic collections over a worker's many long-lived objects: `warden bench` p99 682 / 832 ms
    # with this vs 1,234 / 1,286 ms without (100k entities, runs in the same hour; a noisy 2-core machine).
    gc.set_threshold(100_000, 50, 1000)
    registry = _registry()
    with embedded_stack(get_settings()) as live:
        app = Worker(live, registry).app
        faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()


@cli.command()
def simulate(
    entities: int = typer.Option(3000, help="entities across the five city sources"),
    seed: int = typer.Option(42, help="random seed (same seed, same records)"),
    speed: float = typer.Option(1.0, help="simulated seconds per second (0: as fast as possible)"),
    rate: float = typer.Option(0.0, help="cap in records per second (0: none)"),
    hours_back: float = typer.Option(0.0, help="start this many hours before now (catch up at --speed)"),
    records: int = typer.Option(0, help="stop after this many records (0: run until Ctrl-C)"),
) -> None:
    """Send realistic, seeded city telemetry through the batching producer."""
    from streams.producer import BatchingProducer
    from streams.simulator import CitySimulator, pump

    settings, registry = get_settings(), _registry()
    sim = CitySimulator(entities=entities, seed=seed, start_ts=time.time() - hours_back * 3600)
    topics = {name: s.topic for name, s in registry.items()}

    async def run() -> int:
        producer = BatchingProducer(settings.bootstrap_servers, batch_records=settings.producer_batch_records,
                                    linger_ms=settings.producer_linger_ms, client_id="warden-simulator")
        await producer.start()
        try:
            return await pump(sim, producer, topics, speed=speed, rate=rate,
                              max_records=records or None, not_after_now=True)
        finally:
            await producer.stop()

    console.print(f"simulating {sim.entity_count} entities into {settings.broker} (seed {seed})")
    try:
        sent = asyncio.run(run())
        console.print(f"sent {sent} records")
    except KeyboardInterrupt:
        console.print("stopped")


@cli.command()
def demo(entities: int = typer.Option(3000, help="simulated entities"),
         speed: float = typer.Option(30.0, help="catch-up speed of the simulated clock")) -> None:
    """Embedded stack + worker + simulator + live console, until Ctrl-C."""
    from agents.console import run_demo

    run_demo(get_settings(), _registry(), entities=entities, speed=speed)


@cli.command()
def bench(
    records: int = typer.Option(1_000_000, help="records to send"),
    entities: int = typer.Option(100_000, help="distinct entities"),
    json_out: bool = typer.Option(False, "--json", help="end with one JSON line of the figures"),
) -> None:
    """Measure worker throughput, the raw consume ceiling, alert latency and state bytes per entity."""
    from agents.bench import run_bench

    run_bench(get_settings(), _registry(), records=records, entities=entities, as_json=json_out)


@cli.command("replay")
def replay_cmd(
    files: list[Path] = typer.Argument(..., help="NDJSON files of records, replayed in the order given"),
    alerts_out: Path = typer.Option(..., "--alerts-out", help="write every alert as one JSON line here"),
    signals_out: Path = typer.Option(None, "--signals-out", help="also write every detector signal"),
    refdata: Path = typer.Option(None, "--refdata", help="reference-data folder for routing (default: none)"),
    source: str = typer.Option(None, help="source of records that do not name one"),
) -> None:
    """Run records through the detection code in-process (no broker) and write the alerts.

    Signals are merged into alerts exactly as the live alert manager does (same
    ids, counts, first and last seen); each alert is written once, as it stands
    at the end of the replay, in the order the alerts opened.
    """
    import orjson
    from rich.progress import Progress

    from models.incidents import IncidentBook, QuietPeriods, to_alert
    from models.routing import route
    from replay.offline import read_ndjson, replay
    from state.refdata import RefData, RefDataError

    settings, registry = get_settings(), _registry()
    if source is not None and source not in registry:
        _fail(f"unknown source {source!r}; known: {', '.join(registry)}")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        _fail(f"no such file: {', '.join(missing)}")
    try:
        ref = RefData.load_dir(refdata) if refdata else RefData.empty()
    except RefDataError as exc:
        _fail(str(exc))
    book = IncidentBook(QuietPeriods(settings.alert_quiet_s))
    sig_file = open(signals_out, "wb") if signals_out else None

    def on_signal(sig: dict) -> None:
        book.add(sig)
        if sig_file:
            sig_file.write(orjson.dumps(sig) + b"\n")

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=None)
        started = time.perf_counter()
        try:
            summary = replay(read_ndjson(files), registry, settings, source=source, refdata=ref, on_signal=on_signal,
                             on_progress=lambda n: progress.advance(task, n))
        finally:
            if sig_file:
                sig_file.close()
    elapsed = time.perf_counter() - started
    with open(alerts_out, "wb") as out:
        for inc in book.incidents.values():
            out.write(orjson.dumps(to_alert(inc, route(inc, ref), "opened")) + b"\n")
    console.print(f"{summary.records:,} records ({summary.records / max(elapsed, 1e-9):,.0f}/s), "
                  f"{summary.accepted:,} accepted, {summary.signals:,} signals, "
                  f"{len(book.incidents):,} alerts -> {alerts_out}")
    for reason, n in sorted(summary.rejects.items()):
        console.print(f"  rejected {reason}: {n:,}")


@evaluate_cli.command("nab")
def evaluate_nab(
    nab: Path = typer.Option(..., "--nab", help="NAB folder with data/ and windows.json"),
    profile: str = typer.Option("standard", help="standard, reward_low_FP_rate or reward_low_FN_rate"),
    alerts_out: Path = typer.Option(None, "--alerts-out", help="also write the alerts as NDJSON"),
    json_out: bool = typer.Option(False, "--json", help="end with one JSON line of the scores"),
) -> None:
    """Replay every NAB stream as `metric` records and score the alerts (one configuration for all)."""
    import orjson

    from replay import nab as nab_bench
    from replay.offline import replay

    if not (nab / "windows.json").is_file():
        console.print(f"[red]error:[/] {nab} has no windows.json (is it a NAB folder?)")
        raise typer.Exit(2)
    if profile not in nab_bench.PROFILES:
        console.print(f"[red]error:[/] unknown profile {profile!r}")
        raise typer.Exit(2)
    settings, registry = get_settings(), _registry()
    streams = nab_bench.load(nab)
    alerts: list[dict] = []   # the detector's signals: NAB scores detections, before any merging
    replay(nab_bench.records(streams), registry, settings, on_signal=alerts.append)
    if alerts_out:
        alerts_out.write_bytes(b"".join(orjson.dumps(a) + b"\n" for a in alerts))
    scores = nab_bench.score(streams, alerts, profile)
    table = Table(title=f"NAB ({profile} profile), {len(streams)} streams")
    for col in ("category", "score", "tp", "fp", "fn"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for group in sorted(scores, key=lambda g: (g == "all", g)):
        s = scores[group]
        table.add_row(group, f"{s['score']:.1f}", str(s["tp"]), str(s["fp"]), str(s["fn"]))
    console.print(table)
    if json_out:
        print(orjson.dumps(scores).decode())


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _wait_for_signal() -> None:
    stop = {"flag": False}

    def handler(*_):
        stop["flag"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop["flag"]:
        time.sleep(0.2)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cli()


if __name__ == "__main__":
    main()
