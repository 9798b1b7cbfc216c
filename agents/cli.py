"""The ``warden`` command line."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import typer
from rich.console import Console
from rich.table import Table

from settings import get_settings
from streams.registry import SourceError, load_registry

cli = typer.Typer(help="Warden: a real-time warning engine for a city's operations centre.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
sources_cli = typer.Typer(help="Declared sensor sources.", no_args_is_help=True)
cli.add_typer(sources_cli, name="sources")
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
