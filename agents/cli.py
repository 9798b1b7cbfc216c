"""The ``warden`` command line."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from settings import get_settings
from streams.registry import SourceError, load_registry

cli = typer.Typer(help="Warden: a real-time warning engine for a city's operations centre.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
sources_cli = typer.Typer(help="Declared sensor sources.", no_args_is_help=True)
cli.add_typer(sources_cli, name="sources")
evaluate_cli = typer.Typer(help="Score detectors against labelled data.", no_args_is_help=True)
cli.add_typer(evaluate_cli, name="evaluate")
console = Console()


def _registry():
    try:
        return load_registry(get_settings())
    except SourceError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


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


@cli.command()
def up() -> None:
    """Run the embedded broker and Redis in the foreground and print their URLs."""
    from agents.stack import embedded_stack
    from streams.topics import ensure_topics, warden_topics

    settings, registry = get_settings(), _registry()
    with embedded_stack(settings) as live:
        asyncio.run(ensure_topics(live.bootstrap_servers, warden_topics(live, registry), live.partitions))
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
    source: str = typer.Option(None, help="source of records that do not name one"),
) -> None:
    """Run records through the detection code in-process (no broker) and write the alerts."""
    import orjson
    from rich.progress import Progress

    from replay.offline import read_ndjson, replay

    settings, registry = get_settings(), _registry()
    if source is not None and source not in registry:
        console.print(f"[red]error:[/] unknown source {source!r}; known: {', '.join(registry)}")
        raise typer.Exit(2)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        console.print(f"[red]error:[/] no such file: {', '.join(missing)}")
        raise typer.Exit(2)
    with open(alerts_out, "wb") as out, Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=None)
        started = time.perf_counter()
        summary = replay(read_ndjson(files), registry, settings, source=source,
                         on_alert=lambda a: out.write(orjson.dumps(a) + b"\n"),
                         on_progress=lambda n: progress.advance(task, n))
    elapsed = time.perf_counter() - started
    console.print(f"{summary.records:,} records ({summary.records / max(elapsed, 1e-9):,.0f}/s), "
                  f"{summary.accepted:,} accepted, {summary.alerts:,} alerts -> {alerts_out}")
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
    alerts: list[dict] = []
    replay(nab_bench.records(streams), registry, settings, on_alert=alerts.append)
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
