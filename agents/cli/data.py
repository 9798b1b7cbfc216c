"""The data scientists' commands: replay, archive, train, evaluate, models."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from agents.cli.support import audit, console, fail, registry_or_fail, when, with_redis
from settings import get_settings
from streams.privacy import mask_alert

archive_cli = typer.Typer(help="Replay logs: list segments, apply retention, add label files.", no_args_is_help=True)
models_cli = typer.Typer(help="Model versions: list, promote, roll back.", no_args_is_help=True)
evaluate_cli = typer.Typer(help="Score detectors against labelled data.")

SINCE = typer.Option(None, "--since", help="first event time (ISO-8601 or epoch s)")
UNTIL = typer.Option(None, "--until", help="end of the period, exclusive")
ARCHIVE = typer.Option(None, "--archive", help="archive folder (default: WARDEN_ARCHIVE_DIR or <data dir>/archive)")


def register(cli: typer.Typer) -> None:
    cli.command("replay")(replay_cmd)
    cli.command("train")(train_cmd)
    cli.add_typer(evaluate_cli, name="evaluate")
    cli.add_typer(archive_cli, name="archive")
    cli.add_typer(models_cli, name="models")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _period(archive: Path | None, source: str | None, since: str | None, until: str | None, entity: str | None = None):
    """The archived period the options name, or a clear failure (with the corrupt segments it skipped)."""
    from replay.period import ArchivePeriod, PeriodError

    registry = registry_or_fail()
    try:
        return ArchivePeriod(
            archive or get_settings().archive_path,
            source,
            when(since, "--since"),
            when(until, "--until"),
            entity,
            entity_field=lambda s: registry[s].entity_field if s in registry else "entity",
        )
    except PeriodError as exc:
        _report_corrupt(exc.corrupt)
        fail(str(exc))


def _report_corrupt(corrupt: list) -> None:
    for exc in corrupt:
        console.print(f"[yellow]skipped corrupt segment[/] {exc}", highlight=False, soft_wrap=True)


def _refdata_and_patterns(refdata: Path | None) -> tuple:
    """The reference data (empty without a folder) and the fusion patterns, or a clear failure."""
    from models.fusion import PatternError, load_patterns
    from state.refdata.reference import RefData, RefDataError

    try:
        return (
            RefData.load_dir(refdata) if refdata else RefData.empty(),
            load_patterns(get_settings().fusion_patterns_dirs),
        )
    except (RefDataError, PatternError) as exc:
        fail(str(exc))


def _replayed_alerts(chunks, registry, ref, patterns, models: dict, on_progress) -> tuple[list[dict], object]:
    """Alerts (times as ISO strings, as the scorers read them) and the summary of replaying ``chunks``."""
    from replay.offline import Engines, replay_archive
    from replay.pipeline import AlertPipeline

    settings = get_settings()
    pipeline = AlertPipeline(settings, ref, patterns)
    engines = Engines(registry, settings, refdata=ref, models=models, on_signal=pipeline.add, on_progress=on_progress)
    summary = replay_archive(chunks, engines)
    return pipeline.scored(), summary


def _models(names: list[str], registry) -> dict:
    """``--model`` values (version ids, ``active``, ``builtin``) as source -> loaded version."""
    from models import versions

    settings, out = get_settings(), {}
    for name in names:
        if name == versions.BUILTIN:
            continue
        try:
            if name == "active":
                active = with_redis(versions.active)
                metas = [versions.find(settings.models_path, v) for v in active.values()]
            else:
                metas = [versions.find(settings.models_path, name)]
            for meta in metas:
                if meta["source"] not in registry:
                    fail(f"model version {meta['version']} is for unknown source {meta['source']!r}")
                out[meta["source"]] = versions.load(meta)
        except versions.VersionError as exc:
            fail(str(exc))
    return out


def replay_cmd(
    files: list[Path] = typer.Argument(
        None, help="NDJSON files of records, replayed in the order given (none: the archive)"
    ),
    alerts_out: Path = typer.Option(None, "--alerts-out", help="write every alert as one JSON line here"),
    signals_out: Path = typer.Option(None, "--signals-out", help="also write every detector signal"),
    refdata: Path = typer.Option(None, "--refdata", help="reference-data folder for routing (default: none)"),
    source: str = typer.Option(None, help="only this source (archive), or the source of records naming none"),
    since: str = SINCE,
    until: str = UNTIL,
    entity: str = typer.Option(None, help="only this entity's records (archive)"),
    archive: Path = ARCHIVE,
    model: list[str] = typer.Option(
        None, "--model", help="model version(s) to run, 'active' or 'builtin' (default: builtin)"
    ),
    to_kafka: bool = typer.Option(
        False, "--to-kafka", help="send the archived records to their input topics instead of detecting in-process"
    ),
    speedup: float = typer.Option(0.0, help="with --to-kafka: event seconds per wall second (0: full speed)"),
    personal: bool = typer.Option(
        False, "--personal", help="write plates, dwellings and person counts in full (masked by default)"
    ),
) -> None:
    """Run records through the detection code in-process (no broker) and write the alerts.

    Signals are merged into alerts exactly as the live alert manager does (same
    ids, counts, first and last seen); each alert is written once, as it stands
    at the end of the replay, ordered by first seen (then id), so NDJSON and
    archive replays of the same records write the same file.
    """
    from replay.offline import Engines, read_ndjson, replay, replay_archive
    from replay.pipeline import AlertPipeline

    settings, registry = get_settings(), registry_or_fail()
    if source is not None and source not in registry:
        fail(f"unknown source {source!r}; known: {', '.join(registry)}")
    if files and (to_kafka or since or until or entity or archive):
        fail("--since/--until/--entity/--archive/--to-kafka read the archive: give no files with them")
    if not to_kafka and alerts_out is None:
        fail("say where the alerts go: --alerts-out FILE")
    missing = [str(f) for f in files or [] if not f.is_file()]
    if missing:
        fail(f"no such file: {', '.join(missing)}")
    period = None if files else _period(archive, source, since, until, entity)
    if to_kafka:
        _replay_to_kafka(period, registry, speedup)
        return
    ref, patterns = _refdata_and_patterns(refdata)
    models = _models(model or [], registry)
    sig_file = open(signals_out, "wb") if signals_out else None
    exported = (lambda doc: doc) if personal else mask_alert
    pipeline = AlertPipeline(
        settings,
        ref,
        patterns,
        (lambda sig: sig_file.write(orjson.dumps(exported(sig.doc())) + b"\n")) if sig_file else None,
    )
    on_signal = pipeline.add

    with _progress() as progress:
        task = progress.add_task("replaying", total=period.records if period else None)
        started = time.perf_counter()
        try:
            if period:
                engines = Engines(
                    registry,
                    settings,
                    refdata=ref,
                    models=models,
                    on_signal=on_signal,
                    on_progress=lambda n: progress.advance(task, n),
                )
                summary = replay_archive(period.chunks(record_type=engines.record_type), engines)
            else:
                summary = replay(
                    read_ndjson(files),
                    registry,
                    settings,
                    source=source,
                    refdata=ref,
                    models=models,
                    on_signal=on_signal,
                    on_progress=lambda n: progress.advance(task, n),
                )
        finally:
            if sig_file:
                sig_file.close()
    elapsed = time.perf_counter() - started
    alerts = pipeline.alerts()
    with open(alerts_out, "wb") as out:
        for alert in alerts:
            out.write(orjson.dumps(exported(alert.doc())) + b"\n")
    console.print(
        f"{summary.records:,} records ({summary.records / max(elapsed, 1e-9):,.0f}/s), "
        f"{summary.accepted:,} accepted, {summary.signals:,} signals, "
        f"{len(alerts):,} alerts -> {alerts_out}"
    )
    if summary.duplicates:
        console.print(f"  duplicates (the same entity, time and fields again; no effect): {summary.duplicates:,}")
    for reason, n in sorted(summary.rejects.items()):
        console.print(f"  rejected {reason}: {n:,}")
    if period:
        _report_corrupt(period.corrupt_paths())


def _replay_to_kafka(period, registry, speedup: float) -> None:
    from replay.to_kafka import send
    from streams.kafka.client import kafka_options

    settings = get_settings()
    if not settings.broker:
        fail("--to-kafka needs a broker: set WARDEN_BROKER (`warden up` prints it)")
    with _progress() as progress:
        task = progress.add_task("to Kafka", total=period.records)
        sent = asyncio.run(
            send(
                period.by_partition(),
                registry,
                kafka_options(settings),
                partitioners=registry.partitioners(settings),
                speedup=speedup,
                batch_records=settings.producer_batch_records,
                on_progress=lambda n: progress.advance(task, n),
            )
        )
    console.print(f"sent {sent:,} records to their input topics")
    _report_corrupt(period.corrupt_paths())


def train_cmd(
    source: str = typer.Option(..., help="the source to train for"),
    since: str = SINCE,
    until: str = UNTIL,
    archive: Path = ARCHIVE,
    register_it: bool = typer.Option(True, "--register/--no-register", help="add the version to the registry in Redis"),
) -> None:
    """Warm the engine on an archived period and fit the source's window-outlier model; save a version."""
    from models import versions
    from models.batch.window_outlier import WindowOutlier
    from replay.training import TrainingError, train_window_model

    settings, registry = get_settings(), registry_or_fail()
    if source not in registry:
        fail(f"unknown source {source!r}; known: {', '.join(registry)}")
    period = _period(archive, source, since, until)
    with _progress() as progress:
        task = progress.add_task("training", total=period.records)
        try:
            model, metrics = train_window_model(
                registry[source], period.chunks(), settings, on_progress=lambda n: progress.advance(task, n)
            )
        except TrainingError as exc:
            fail(str(exc))
    _report_corrupt(period.corrupt_paths())
    from streams.event_time import iso

    times = [s.entry for s in period.found]
    meta = {
        "detector": "window_outlier",
        "params": WindowOutlier.settings_of(registry[source]).model_dump(),
        "period": {
            "since": iso(period.since) if period.since is not None else iso(min(e["min_ts"] for e in times)),
            "until": iso(period.until) if period.until is not None else iso(max(e["max_ts"] for e in times)),
        },
        "metrics": metrics,
        "skipped_segments": sorted({str(e.path) for e in period.corrupt}),
    }
    meta = versions.save(settings.models_path, source, model, meta)
    if register_it:
        with_redis(lambda r: versions.register(r, meta))
    console.print(
        f"model version [bold]{meta['version']}[/]: {metrics['windows']:,} entity-hours from "
        f"{metrics['records']:,} records, {metrics['entities']:,} entities; alert threshold "
        f"{metrics['threshold']:.4f} (training flag rate {metrics['train_flag_rate']:.2%})"
        + ("" if register_it else " (not registered)"),
        highlight=False,
    )


@evaluate_cli.callback(invoke_without_command=True)
def evaluate_cmd(
    ctx: typer.Context,
    source: str = typer.Option(None, help="the source to evaluate"),
    since: str = SINCE,
    until: str = UNTIL,
    archive: Path = ARCHIVE,
    model: list[str] = typer.Option(
        None, "--model", help="one or two versions to compare ('builtin', 'active', or an id); default: builtin"
    ),
    labels: list[Path] = typer.Option(None, "--labels", help="label files besides the archive's labels/"),
    plot: Path = typer.Option(None, "--plot", help="write a PNG timeline of labelled entities here"),
    grace_s: float = typer.Option(3600.0, help="an alert this long after a window's end still detects it"),
    warm_up_s: float = typer.Option(
        86_400.0, help="replay this long before --since first, so detectors start warm (alerts ended by then: unscored)"
    ),
    refdata: Path = typer.Option(None, "--refdata", help="reference-data folder (site detectors, fusion)"),
    ground_truth: list[Path] = typer.Option(
        None,
        "--ground-truth",
        help="incident ground truth (as `warden simulate` writes it): a detection report per incident kind",
    ),
    json_out: bool = typer.Option(False, "--json", help="end with one JSON line of the results"),
) -> None:
    """Replay a held-out period with one or two model versions and score the alerts against labels.

    With --ground-truth: replay every source of the period (with reference data and fusion) and report
    recall, precision and median detection delay per incident kind.
    """
    if ctx.invoked_subcommand is not None:
        return
    if ground_truth:
        results = incident_report(
            ground_truth, archive=archive, refdata=refdata, source=source, since=since, until=until, grace_s=grace_s
        )
        if json_out:
            print(orjson.dumps({k: r.row() for k, r in results.items()}).decode())
        return
    from replay.archive import label_files
    from replay.evaluation import LabelError, read_labels, score
    from replay.evaluation import plot as draw
    from streams.event_time import epoch

    registry = registry_or_fail()
    if source is None:
        fail("say which source: --source NAME (or use `warden evaluate nab`)")
    if source not in registry:
        fail(f"unknown source {source!r}; known: {', '.join(registry)}")
    names = model or ["builtin"]
    if len(names) > 2:
        fail("compare at most two model versions")
    ref, patterns = _refdata_and_patterns(refdata)
    period = _period(archive, source, since, until)
    replayed = (
        period
        if period.since is None or not warm_up_s
        else _period(archive, source, str(period.since - warm_up_s), until)
    )
    files = label_files(period.root) + list(labels or [])
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        fail(f"no such label file: {', '.join(missing)}")
    try:
        windows = [
            w
            for w in read_labels(files)
            if w.source in (None, source)
            and (period.until is None or w.start < period.until)
            and (period.since is None or w.end >= period.since)
        ]
    except LabelError as exc:
        fail(str(exc))
    if not windows:
        fail(f"no labels for {source!r} in the period (label files: {', '.join(map(str, files)) or 'none'})")
    plotted = list(dict.fromkeys(w.entity for w in windows))[:4]
    series: dict[str, tuple[list, list]] = {e: ([], []) for e in plotted}
    field = registry[source].windowed_fields[0] if registry[source].windowed_fields else None
    results, alerts_by = {}, {}
    with _progress() as progress:
        for i, name in enumerate(names):
            task = progress.add_task(f"replaying with {name}", total=replayed.records)
            chunks = replayed.chunks()
            if i == 0 and field:
                chunks = _tap(chunks, series, registry[source].entity_field, field)
            alerts, _ = _replayed_alerts(
                chunks,
                registry,
                ref,
                patterns,
                _models([name], registry),
                lambda n, task=task: progress.advance(task, n),
            )
            if period.since is not None:  # the warm-up's own alerts are not the period's
                alerts = [a for a in alerts if epoch(a["last_seen"]) >= period.since]
            alerts_by[name] = alerts
            results[name] = score(alerts, windows, grace_s)
    _report_corrupt(replayed.corrupt_paths())
    table = Table(title=f"{source}: {period.span()}, {len(windows)} labelled window(s)")
    for col in ("kind", "version", "alerts", "labelled", "detected", "precision", "recall", "F1", "median delay"):
        table.add_column(col, justify="left" if col in ("kind", "version") else "right")
    kinds = sorted({k for r in results.values() for k in r})
    for kind in kinds:
        for name in names:
            r = results[name].get(kind)
            if r is None:
                table.add_row(kind, name, "0", "-", "-", "-", "-", "-", "-")
                continue
            table.add_row(
                kind,
                name,
                str(r.alerts),
                str(r.windows),
                str(r.detected),
                _pct(r.precision),
                _pct(r.recall),
                _pct(r.f1),
                _delay(r.median_delay_s),
            )
    console.print(table)
    if plot:
        draw(plot, series, windows, alerts_by, f"{source}: {', '.join(names)}")
        console.print(f"plot -> {plot}")
    if json_out:
        print(orjson.dumps({name: {k: r.row() for k, r in res.items()} for name, res in results.items()}).decode())


def incident_report(
    truth_files: list[Path],
    *,
    archive: Path | None = None,
    refdata: Path | None = None,
    source: str | None = None,
    since: str | None = None,
    until: str | None = None,
    grace_s: float = 3600.0,
) -> dict:
    """Replay the archived period of the incidents and print recall, precision and median delay per kind."""
    from replay.evaluation import LabelError, read_ground_truth, score_incidents, unexplained

    registry = registry_or_fail()
    missing = [str(f) for f in truth_files if not f.is_file()]
    if missing:
        fail(f"no such ground-truth file: {', '.join(missing)}")
    try:
        truths = read_ground_truth(truth_files)
    except LabelError as exc:
        fail(str(exc))
    ref, patterns = _refdata_and_patterns(refdata)
    if not truths:
        fail("the ground truth lists no incidents")
    # by default, the period the incidents cover (with an hour before, for the detectors to warm up)
    since = since if since is not None else str(min(t.start for t in truths) - 3600)
    period = _period(archive, source, since, until)
    with _progress() as progress:
        task = progress.add_task("replaying", total=period.records)
        alerts, summary = _replayed_alerts(
            period.chunks(), registry, ref, patterns, {}, lambda n: progress.advance(task, n)
        )
    _report_corrupt(period.corrupt_paths())
    # records of the last lateness are still held for event order, as they were live: not judged yet
    last = max(s.entry["max_ts"] for s in period.found) - max(
        (s.allowed_lateness(get_settings()) for s in registry.values()), default=0.0
    )
    results = score_incidents(alerts, truths, grace_s, until=last)
    table = Table(title=f"detection report: {summary.accepted:,} records, {len(alerts):,} alerts, {period.span()}")
    for col in ("incident", "incidents", "detected", "recall", "alerts", "precision", "median delay"):
        table.add_column(col, justify="left" if col == "incident" else "right")
    for kind, r in results.items():
        table.add_row(
            kind,
            str(r.windows),
            str(r.detected),
            _pct(r.recall),
            str(r.alerts),
            _pct(r.precision),
            _delay(r.median_delay_s),
        )
    false = unexplained(alerts, truths, grace_s)
    table.add_section()
    table.add_row(
        "every alert", "", "", "", str(len(alerts)), _pct(1 - len(false) / len(alerts) if alerts else None), ""
    )
    console.print(table)
    if false:
        kinds = Counter(a["kind"] for a in false)
        console.print("explained by no incident: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    pending = sum(1 for t in truths if t.observable > last)
    if pending:
        console.print(f"{pending} incident(s) not yet observable when the data ends: not counted")
    return results


def _tap(chunks, series: dict, entity_field: str, field: str):
    """Pass chunks through, keeping (time, value) of the plotted entities."""
    for chunk in chunks:
        for t, r in zip(chunk.ts, chunk.records):
            got = series.get(r.get(entity_field))
            if got is not None and isinstance(r.get(field), (int, float)):
                got[0].append(t)
                got[1].append(float(r[field]))
        yield chunk


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _delay(s: float | None) -> str:
    return "-" if s is None else f"{s:,.0f} s"


@evaluate_cli.command("nab")
def evaluate_nab(
    nab: Path = typer.Option(..., "--nab", help="NAB folder with data/ and windows.json"),
    profile: str = typer.Option("standard", help="standard, reward_low_FP_rate or reward_low_FN_rate"),
    alerts_out: Path = typer.Option(None, "--alerts-out", help="also write the alerts as NDJSON"),
    json_out: bool = typer.Option(False, "--json", help="end with one JSON line of the scores"),
    cv: bool = typer.Option(
        False, "--cv", help="leave one category out: choose the [anomaly] settings on three, score on the fourth"
    ),
    grid: str = typer.Option(None, help='--cv\'s grid, JSON: {"setting": [values], ...} (default: replay/nab_cv.py)'),
) -> None:
    """Replay every NAB stream as `metric` records and score the alerts (one configuration for all)."""
    from replay import nab as nab_bench
    from replay.offline import replay

    if not (nab / "windows.json").is_file():
        fail(f"{nab} has no windows.json (is it a NAB folder?)")
    if profile not in nab_bench.PROFILES:
        fail(f"unknown profile {profile!r}")
    settings, registry = get_settings(), registry_or_fail()
    streams = nab_bench.load(nab)
    if cv:
        _nab_cross_validation(streams, registry, settings, grid, json_out)
        return
    signals: list = []  # NAB scores the detector's detections, before any merging
    replay(nab_bench.records(streams), registry, settings, on_signal=signals.append)
    alerts = [s.doc() for s in signals]
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


def _nab_cross_validation(streams, registry, settings, grid: str | None, json_out: bool) -> None:
    """``evaluate nab --cv``: each grid configuration run once, then per profile the leave-one-category-out
    folds, their mean beside the shipped configuration's mean over the same categories, and its score on every
    file."""
    from rich.progress import track

    from models.catalog import check_source
    from replay import nab as nab_bench
    from replay import nab_cv
    from streams.registry import SourceError

    try:
        configs = nab_cv.grid_configs(orjson.loads(grid) if grid else nab_cv.DEFAULT_GRID)
        for config in configs:
            check_source(nab_cv.with_anomaly(registry, config)["metric"])
    except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
        fail(f"--grid: a JSON object of lists of values ({exc})")
    except SourceError as exc:
        fail(f"--grid: {exc}")
    specs = [nab_cv.anomaly_settings(registry, config) for config in [{}, *configs]]  # 0: as shipped
    rows = list(
        track(nab_cv.score_configs(streams, specs), total=len(specs), description="running NAB per configuration")
    )
    # Held out in turn: the categories with labelled windows; one without (artificialNoAnomaly) only costs false
    # alarms, and is always among the files configurations are chosen on.
    category = [s.name.split("/")[0] for s in streams]
    categories = sorted({c for s, c in zip(streams, category) if s.windows})
    unlabelled = sorted(set(category) - set(categories))
    out: dict = {"grid": configs, "profiles": {}}
    for profile in nab_bench.PROFILES:

        def score(k: int, cats: list[str], profile: str = profile) -> float:
            return nab_bench.normalised([r for r, c in zip(rows[k][profile], category) if c in cats])["score"]

        folds = nab_cv.cross_validate(categories, list(range(1, len(configs) + 1)), score, always=unlabelled)
        shipped = {c: score(0, [c]) for c in categories}
        mean = sum(f["score"] for f in folds) / len(folds)
        shipped_mean = sum(shipped.values()) / len(shipped)
        everything = nab_bench.normalised(rows[0][profile])
        table = Table(
            title=f"NAB leave-one-category-out ({profile}): held-out mean {mean:.2f}, the shipped configuration's "
            f"{shipped_mean:.2f} on the same categories, {everything['score']:.2f} on all files"
        )
        for col in ("held out", "chosen on the other three", "score there", "held-out score", "shipped's score"):
            table.add_column(col)
        for f in folds:
            table.add_row(
                f["held_out"],
                orjson.dumps(configs[f["chosen"] - 1]).decode(),
                f"{f['seen']:.2f}",
                f"{f['score']:.2f}",
                f"{shipped[f['held_out']]:.2f}",
            )
        console.print(table)
        out["profiles"][profile] = {
            "loco_mean": round(mean, 2),
            "shipped_mean": round(shipped_mean, 2),
            "all": everything,
            "shipped": shipped,
            "folds": [{**f, "chosen": configs[f["chosen"] - 1]} for f in folds],
        }
    if json_out:
        print(orjson.dumps(out).decode())


@archive_cli.command("list")
def archive_list(
    source: str = typer.Option(None), since: str = SINCE, until: str = UNTIL, archive: Path = ARCHIVE
) -> None:
    """The archive's segments: source, partition, hour, offsets, event-time range, records, size."""
    from streams.event_time import iso

    period = _period(archive, source, since, until)
    table = Table(title=f"replay logs in {period.root}")
    for col in ("source", "part", "hour", "offsets", "event times", "records", "bytes", "sealed"):
        table.add_column(col, justify="right" if col in ("part", "records", "bytes") else "left")
    for s in period.found:
        e = s.entry
        table.add_row(
            e["source"],
            str(e["partition"]),
            iso(e["hour"] * 3600)[:13],
            f"{e['first_offset']}-{e['last_offset']}",
            f"{iso(e['min_ts'])} .. {iso(e['max_ts'])}",
            f"{e['records']:,}",
            f"{e['bytes']:,}",
            "yes" if s.sealed else "open",
        )
    console.print(table)
    console.print(f"{len(period.found)} segment(s), {period.records:,} records")
    _report_corrupt(period.corrupt_paths())


@archive_cli.command("prune")
def archive_prune(archive: Path = ARCHIVE) -> None:
    """Apply retention now (WARDEN_ARCHIVE_RETENTION_S, WARDEN_ARCHIVE_MAX_BYTES)."""
    from replay.archive import prune

    s = get_settings()
    root = archive or s.archive_path
    gone = prune(root, time.time(), s.archive_retention_s, s.archive_max_bytes) if root.is_dir() else []
    console.print(f"deleted {len(gone)} segment(s)")


@archive_cli.command("label")
def archive_label(
    path: Path = typer.Argument(..., help="NDJSON ground truth: kind, entity|entities, start, end"),
    name: str = typer.Option(None, help="stored as labels/<name>.ndjson (default: the file's name)"),
    archive: Path = ARCHIVE,
) -> None:
    """Store a ground-truth file beside the replay logs (checked first)."""
    import re

    from replay.archive import append_labels
    from replay.evaluation import LabelError, read_labels

    if not path.is_file():
        fail(f"no such file: {path}")
    name = name or path.stem
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name == "staff":
        fail(f"label set name {name!r}: letters, digits, '_', '.', '-' only, and not 'staff'")
    try:
        windows = read_labels([path])
    except LabelError as exc:
        fail(str(exc))
    docs = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    stored = append_labels(archive or get_settings().archive_path, name, docs)
    console.print(f"{len(windows)} labelled window(s) -> {stored}")


@models_cli.command("list")
def models_list() -> None:
    """Registered model versions, oldest first; the promoted one of each source is marked."""
    from models import versions

    metas = with_redis(versions.listing)
    table = Table(title="model versions")
    for col in ("version", "source", "period", "windows", "threshold", "flag rate", "active"):
        table.add_column(col, no_wrap=col == "version")
    for m in metas:
        mx = m.get("metrics", {})
        table.add_row(
            m["version"],
            m["source"],
            f"{m['period']['since']} .. {m['period']['until']}",
            f"{mx.get('windows', 0):,}",
            f"{mx.get('threshold', 0):.4f}",
            f"{mx.get('train_flag_rate', 0):.2%}",
            "*" if m["active"] else "",
        )
    console.print(table if metas else "no model versions registered (`warden train` makes one)")


def _model_change(step: str, change) -> tuple[str, str]:
    """Run ``change(redis) -> (source, version now running)``, audited as ``model.<step>``; a version error
    ends the command."""
    from models import versions

    async def work(r):
        source, now = await change(r)
        await audit(r, f"model.{step}", source, {"now": now})
        return source, now

    try:
        return with_redis(work)
    except versions.VersionError as exc:
        fail(str(exc))


@models_cli.command("promote")
def models_promote(version: str = typer.Argument(...)) -> None:
    """Make VERSION its source's running version; workers swap to it between batches."""
    from models import versions

    async def promote(r):
        return (await versions.promote(r, version))["source"], version

    source, _ = _model_change("promote", promote)
    console.print(f"{source}: promoted {version}")


@models_cli.command("rollback")
def models_rollback(source: str = typer.Option(..., help="the source to roll back")) -> None:
    """Back to the version promoted before the current one (or the built-in detectors)."""
    from models import versions

    async def rollback(r):
        return source, await versions.rollback(r, source)

    _, back = _model_change("rollback", rollback)
    console.print(f"{source}: now {back}")
