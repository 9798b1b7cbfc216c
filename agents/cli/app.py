"""The ``warden`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import logging
import signal
import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from agents.cli import access, data
from agents.cli.support import (
    LANGUAGE,
    PERSONAL,
    alert_view,
    audit,
    console,
    fail,
    login_name,
    preflight,
    registry_or_fail,
    with_redis,
)
from models.lifecycle import STATUSES
from models.signal import SEVERITIES
from settings import ConfigError, get_settings
from streams.privacy import mask_alert, mask_logs

cli = typer.Typer(
    help="Warden: a real-time warning engine for a city's operations centre.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@cli.callback()
def _read_settings() -> None:
    """Each command reads the settings afresh (a test's runner calls many, each with its own environment)."""
    get_settings.cache_clear()


sources_cli = typer.Typer(help="Declared sensor sources.", no_args_is_help=True)
cli.add_typer(sources_cli, name="sources")
refdata_cli = typer.Typer(help="Reference data: sites, vehicles, zones, routes, areas, units.", no_args_is_help=True)
cli.add_typer(refdata_cli, name="refdata")
Status = enum.Enum("Status", {s: s for s in STATUSES})
Severity = enum.Enum("Severity", {s: s for s in SEVERITIES})
alerts_cli = typer.Typer(help="Alerts: watch, list, show, and move them through their lifecycle.", no_args_is_help=True)
cli.add_typer(alerts_cli, name="alerts")
data.register(cli)
access.register(cli)


@sources_cli.command("list")
def sources_list() -> None:
    """Show every declared source: topic, fields, rules, detectors."""
    table = Table(title="Sources")
    for col in ("source", "topic", "fields (unit)", "windowed", "rules", "detectors", "declared in"):
        table.add_column(col)
    for s in registry_or_fail().values():
        fields = ", ".join(f"{n} ({f.unit})" if f.unit else n for n, f in s.fields.items())
        table.add_row(
            s.name,
            s.topic,
            fields,
            ", ".join(s.windowed_fields),
            ", ".join(r.kind for r in s.rules),
            ", ".join(s.detectors),
            str(s.path),
        )
    console.print(table)


@refdata_cli.command("load")
def refdata_load(
    path: Path = typer.Argument(..., help="folder with areas.geojson, sites.csv, vehicles.csv, ..."),
) -> None:
    """Validate a reference-data folder and store it; running workers pick it up within seconds."""
    from state.refdata import store as refstore
    from state.refdata.reference import RefData, RefDataError

    try:
        ref = RefData.load_dir(path)
    except RefDataError as exc:
        fail(str(exc))

    async def work(r):
        version = await refstore.save(r, ref)
        await audit(r, "refdata.load", f"version {version}", ref.counts())
        return version

    version = with_redis(work)
    console.print(f"reference data version {version}: {_counted(ref.counts())}")


@refdata_cli.command("show")
def refdata_show() -> None:
    """The stored reference data's version and counts."""
    from state.refdata import store as refstore

    ref = with_redis(refstore.load)
    console.print(f"reference data version {ref.version}: {_counted(ref.counts())}")


@refdata_cli.command("city")
def refdata_city(
    path: Path = typer.Argument(..., help="folder to write"),
    entities: int = typer.Option(3000, help="as given to `warden simulate`"),
    seed: int = typer.Option(42, help="as given to `warden simulate`"),
) -> None:
    """Write the simulated city's reference data (matches `warden simulate` with the same options)."""
    from streams.sim.city import write_city
    from streams.sim.simulator import CitySimulator

    counts = write_city(path, CitySimulator(entities=entities, seed=seed), seed)
    console.print(f"wrote {path}: {_counted(counts)}")


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {what}" for what, n in counts.items())


def _town(a: dict) -> str:
    area = a.get("area") or {}
    return area.get("town") or area.get("county") or area.get("city") or ""


def _alerts_table(alerts: list[dict], language: str) -> Table:
    """Alerts with their ``display`` as a table in ``language``."""
    from agents.present.wording import Wording
    from agents.tools.demo import SEVERITY_STYLE

    w = Wording.of(language)
    table = Table(title=f"{len(alerts)}")
    for col in ("id", "status", "severity", "kind", "entity", "count", "first_seen", "town", "departments"):
        table.add_column(w.term("ui", col), overflow="fold")
    for a in alerts:
        d = a["display"]
        row = [a["id"], d["status"], d["severity"], d["title"], a["entity"], str(a["count"]), d["first_seen"]]
        table.add_row(*row, _town(a), ", ".join(d["departments"]), style=SEVERITY_STYLE.get(a["severity"], ""))
    return table


@alerts_cli.command("list")
def alerts_list(
    status: Status = typer.Option(None),
    kind: str = typer.Option(None, help="an alert kind (one that has alerts)"),
    area: str = typer.Option(None, help="city, county or town id"),
    severity: Severity = typer.Option(None),
    limit: int = typer.Option(50, min=1, max=1000),
    json_out: bool = typer.Option(False, "--json", help="one JSON object per line"),
    personal: bool = PERSONAL,
    language: str = LANGUAGE,
) -> None:
    """Alerts, newest first (times local, in the city's zone)."""
    import orjson

    from agents.alerts.store import AlertStore

    async def listed(r):
        store = AlertStore(r, get_settings())
        for name, value in (("kind", kind), ("area", area)):
            if value and not await store.indexed(name, value):
                known = await store.indexed_values(name)
                fail(f"--{name}: no alert has {name} {value!r}; with alerts: {', '.join(known) or 'none'}")
        return await store.list(
            status=status and status.value, kind=kind, area=area, severity=severity and severity.value, limit=limit
        )

    alerts = with_redis(listed)
    view, language = alert_view(language)
    alerts = [a if personal else mask_alert(a) for a in alerts]
    alerts = [{**a, "display": view.display(a, language)} for a in alerts]
    if json_out:
        for a in alerts:
            print(orjson.dumps(a).decode())
    else:
        console.print(_alerts_table(alerts, language))


@alerts_cli.command("show")
def alerts_show(alert_id: str = typer.Argument(...), personal: bool = PERSONAL, language: str = LANGUAGE) -> None:
    """One alert in full, with its history (and its ``display``: how people read it)."""
    import orjson

    from agents.alerts.store import AlertNotFound, AlertStore

    try:
        alert = with_redis(lambda r: AlertStore(r, get_settings()).get(alert_id))
    except AlertNotFound as exc:
        fail(str(exc), 1)
    view, language = alert_view(language)
    alert = alert if personal else mask_alert(alert)
    print(orjson.dumps({**alert, "display": view.display(alert, language)}, option=orjson.OPT_INDENT_2).decode())


@alerts_cli.command("tail")
def alerts_tail(
    history: int = typer.Option(10, min=0, help="show this many recent changes first"),
    personal: bool = PERSONAL,
    language: str = LANGUAGE,
) -> None:
    """Follow alert changes live (Ctrl-C stops; times local)."""
    import orjson

    from agents.alerts.store import ALERT_STREAM

    view, language = alert_view(language)

    def _print_change(a: dict) -> None:
        a = a if personal else mask_alert(a)
        _print_alert_change(a, view.display(a, language))

    async def follow(r):
        last = "$"
        for entry_id, fields in reversed(await r.xrevrange(ALERT_STREAM, count=history) if history else []):
            _print_change(orjson.loads(fields[b"alert"]))
            last = entry_id
        while True:
            for _, entries in await r.xread({ALERT_STREAM: last}, block=1000, count=500) or []:
                for last, fields in entries:  # noqa: B007 - the stream's cursor for the next read
                    _print_change(orjson.loads(fields[b"alert"]))

    with contextlib.suppress(KeyboardInterrupt):
        with_redis(follow)


def _print_alert_change(a: dict, d: dict) -> None:
    from agents.tools.demo import SEVERITY_STYLE

    console.print(
        f"{d['last_seen']}  {a['event']:<10} {d['severity']:<8} {d['title']:<24} {a['entity']:<20} "
        f"x{a['count']:<4} {_town(a)}  {a['id']}",
        style=SEVERITY_STYLE.get(a["severity"], ""),
        highlight=False,
        markup=False,
    )


def _transition(alert_id: str, action: str, by: str, note: str, department: str | None = None) -> None:
    from agents.alerts.store import AlertNotFound, AlertStore
    from models.lifecycle import TransitionError

    async def work(r):
        alert = await AlertStore(r, get_settings()).transition(alert_id, action, by, note, department)
        await audit(r, f"alert.{action}", alert_id, {"note": note, "status": alert["status"]}, by=by)
        return alert

    try:
        alert = with_redis(work)
    except (AlertNotFound, TransitionError) as exc:
        fail(str(exc), 1)
    console.print(f"{alert_id}: {alert['transition']['from']} -> {alert['status']} by {by}", highlight=False)


BY = typer.Option(None, "--by", help="who is doing this (default: your login name)")
NOTE = typer.Option("", "--note", help="a note kept in the alert's history")


@alerts_cli.command("ack")
def alerts_ack(alert_id: str, by: str = BY, note: str = NOTE) -> None:
    """Acknowledge an open alert."""
    _transition(alert_id, "acknowledge", by or login_name(), note)


@alerts_cli.command("dispatch")
def alerts_dispatch(
    alert_id: str, to: str = typer.Option(..., "--to", help="department it goes to"), by: str = BY, note: str = NOTE
) -> None:
    """Dispatch an alert to a department (one the reference data knows)."""
    from state.refdata import store as refstore

    known = with_redis(refstore.load).department_names()
    if to not in known:
        fail(f"--to: no department {to!r}; known: {', '.join(known)}")
    _transition(alert_id, "dispatch", by or login_name(), note, to)


@alerts_cli.command("resolve")
def alerts_resolve(alert_id: str, by: str = BY, note: str = NOTE) -> None:
    """Resolve an alert (a true alert: a label for learning)."""
    _transition(alert_id, "resolve", by or login_name(), note)


@alerts_cli.command("false-positive")
def alerts_false_positive(alert_id: str, by: str = BY, note: str = NOTE) -> None:
    """Mark an alert false positive (a label for learning)."""
    _transition(alert_id, "false_positive", by or login_name(), note)


@cli.command()
def report(
    day: str = typer.Option(None, help="the local day, YYYY-MM-DD (default: today in WARDEN_TIMEZONE)"),
    out: Path = typer.Option(None, help="folder to write to (default: WARDEN_REPORTS_DIR, <data_dir>/reports)"),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="also print it to PDF with headless Chromium"),
    personal: bool = PERSONAL,
    language: str = LANGUAGE,
) -> None:
    """Write the day's report: counts, trends, top places and kinds, late departments, notable incidents with
    their evidence, enforcement advice (self-contained HTML, and a PDF)."""
    from datetime import date, datetime

    from agents.alerts.accountability import Accountability
    from agents.alerts.store import AlertStore
    from agents.present import report as daily
    from state.refdata import store as refstore

    settings = get_settings()
    view, language = alert_view(language)
    try:
        the_day = date.fromisoformat(day) if day else datetime.now(view.clock.zone).date()
    except ValueError:
        fail(f"--day: {day!r} is not a date (YYYY-MM-DD)")
    start, _ = daily.day_bounds(the_day, view)

    async def gather(r):
        alerts = await AlertStore(r, settings).raised_since(start - daily.TREND_DAYS * 86_400)
        return alerts, await Accountability(r, settings.alert_stream_maxlen).figures(), await refstore.load(r)

    alerts, figures, ref = with_redis(gather)
    alerts = alerts if personal else [mask_alert(a) for a in alerts]
    folder = out or settings.reports_path
    folder.mkdir(parents=True, exist_ok=True)
    html = folder / f"report-{the_day.isoformat()}.html"
    built = daily.build(alerts, the_day, view, ref, language, figures)
    html.write_text(daily.render(built), encoding="utf-8")
    console.print(f"{html}: {built['raised']} alerts raised on {the_day}", highlight=False)
    if pdf:
        try:
            daily.print_pdf(html, html.with_suffix(".pdf"))
        except RuntimeError as exc:
            fail(str(exc))
        console.print(f"{html.with_suffix('.pdf')}", highlight=False)


@cli.command()
def up() -> None:
    """Run the embedded broker and Redis in the foreground; print their addresses and one ``export`` line to use
    them (scripts read it; it holds the Redis password, so it goes to your terminal only), and write the same
    variables to <data_dir>/embedded.env, readable by you only."""
    from agents.embedded.stack import child_env, embedded_stack, write_env_file
    from streams.kafka.topics import ensure_topics, warden_topics

    settings, registry = get_settings(), registry_or_fail()
    with embedded_stack(settings) as live:
        asyncio.run(ensure_topics(live, warden_topics(live, registry)))
        console.print(f"broker  [bold]{live.broker}[/]\nredis   [bold]{live.redis_display_url}[/]")
        env_file = write_env_file(live, settings.data_dir / "embedded.env")
        console.print(
            " ".join(["export", *(f"{k}={v}" for k, v in child_env(live).items())]),
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
        console.print(f"in another shell: [bold]source {env_file}[/]", soft_wrap=True, highlight=False)
        console.print("[dim]Ctrl-C stops both.[/]")
        _wait_for_signal()


def _return_freed_memory() -> None:
    """Have glibc give big freed blocks back to the system: its default raises the mmap threshold after
    each big free (checkpoint blobs, fetch buffers), so they stay resident; threads' arenas are capped."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
    libc.mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024)
    libc.mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024)
    libc.mallopt(M_ARENA_MAX, 2)


@cli.command()
def worker(loglevel: str = typer.Option("info", help="crit, error, warn, info or debug")) -> None:
    """Run a worker against WARDEN_BROKER / WARDEN_REDIS_URL, or the embedded stack when unset."""
    import gc

    import faust

    from agents.embedded.stack import embedded_stack
    from agents.worker.app import Worker

    # Fewer cyclic collections over a worker's many long-lived objects: `warden bench` p99 682 / 832 ms
    # with this vs 1,234 / 1,286 ms without (100k entities, runs in the same hour; a noisy 2-core machine).
    gc.set_threshold(100_000, 50, 1000)
    _return_freed_memory()
    from models.fusion import PatternError

    registry = registry_or_fail()
    with embedded_stack(get_settings()) as live:
        preflight(live, wait_for_redis=True)
        try:
            app = Worker(live, registry).app  # loads the fusion patterns: a bad file stops the start
        except PatternError as exc:
            fail(str(exc))
        runner = faust.Worker(app, loglevel=loglevel, quiet=True)
        # Faust's terminal spinner (on at warn and above) sets the root logger to DEBUG so it can spin on
        # every record: each aiokafka debug line was then built, formatted and dropped - 15% of the
        # consumer thread in py-spy under `warden bench`.
        runner.spinner = None
        runner.execute_from_commandline()


@cli.command()
def simulate(
    entities: int = typer.Option(3000, help="entities across the five city sources"),
    seed: int = typer.Option(42, help="random seed (same seed, same records)"),
    speed: float = typer.Option(1.0, help="simulated seconds per second (0: as fast as possible)"),
    rate: float = typer.Option(0.0, help="cap in records per second (0: none)"),
    hours_back: float = typer.Option(0.0, help="start this many hours before now (catch up at --speed)"),
    records: int = typer.Option(0, help="stop after this many records (0: run until Ctrl-C)"),
    incidents: bool = typer.Option(True, "--incidents/--no-incidents", help="inject seeded incidents"),
    incident_every: float = typer.Option(600.0, help="simulated seconds between incidents"),
    ground_truth: Path = typer.Option(None, help="append each incident here (default <data dir>/ground-truth.ndjson)"),
) -> None:
    """Send realistic, seeded city telemetry through the batching producer, with seeded incidents.

    The incidents need the city's reference data as `warden refdata city` writes it (same --entities
    and --seed); their ground truth goes to --ground-truth for `warden evaluate --ground-truth`.
    """
    from streams.kafka.producer import BatchingProducer
    from streams.sim.city import city_ref
    from streams.sim.scenario import Scenario
    from streams.sim.simulator import CitySimulator, pump

    settings, registry = get_settings(), registry_or_fail()
    sim = CitySimulator(entities=entities, seed=seed, start_ts=time.time() - hours_back * 3600)
    topics = {name: s.topic for name, s in registry.items()}
    ticks = None
    if incidents:
        truth = ground_truth or settings.data_dir / "ground-truth.ndjson"
        truth.parent.mkdir(parents=True, exist_ok=True)
        ticks = Scenario(
            sim, city_ref(sim, seed), seed, first_at=sim.ts + incident_every, every_s=incident_every, truth=truth
        ).ticks()
        console.print(f"incidents every {incident_every:g} simulated seconds; ground truth -> {truth}")

    async def run() -> int:
        producer = BatchingProducer.for_sources(settings, registry, "warden-simulator")
        await producer.start()
        try:
            return await pump(
                sim,
                producer,
                topics,
                speed=speed,
                rate=rate,
                max_records=records or None,
                not_after_now=True,
                ticks=ticks,
            )
        finally:
            await producer.stop()

    console.print(f"simulating {sim.entity_count} entities into {settings.broker} (seed {seed})")
    try:
        sent = asyncio.run(run())
        console.print(f"sent {sent} records")
    except KeyboardInterrupt:
        console.print("stopped")


@cli.command()
def demo(
    entities: int = typer.Option(3000, help="simulated entities"),
    speed: float = typer.Option(30.0, help="catch-up speed of the simulated clock"),
) -> None:
    """Embedded stack + worker + simulator + live console, until Ctrl-C."""
    from agents.tools.demo import run_demo

    run_demo(get_settings(), registry_or_fail(), entities=entities, speed=speed)


@cli.command()
def bench(
    records: int = typer.Option(1_000_000, help="records to send"),
    entities: int = typer.Option(100_000, help="distinct entities"),
    json_out: bool = typer.Option(False, "--json", help="end with one JSON line of the figures"),
    workers: str | None = typer.Option(
        None,
        help="scale-out instead: worker counts to compare, e.g. 1,2,4,8 "
        "(each a consumer group of its own over the same backlog)",
    ),
    plot: Path = typer.Option(None, "--plot", help="with --workers: write a PNG of throughput and cores here"),
) -> None:
    """Measure worker throughput, the raw consume ceiling, alert latency and state bytes per entity."""
    if workers is None and plot is not None:
        raise typer.BadParameter("plots the scale-out: give --workers too", param_hint="--plot")
    if workers is None:
        from agents.tools.bench import run_bench

        run_bench(get_settings(), registry_or_fail(), records=records, entities=entities, as_json=json_out)
        return
    from agents.tools.bench_scale import run_scale, worker_counts

    settings = get_settings()
    try:
        counts = worker_counts(workers, settings.partitions)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--workers") from None
    run_scale(
        settings, registry_or_fail(), counts=counts, records=records, entities=entities, as_json=json_out, plot=plot
    )


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
    mask_logs()
    try:
        cli()
    except ConfigError as exc:  # a wrong setting found anywhere: its message, not a stack trace
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
