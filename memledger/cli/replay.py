"""Operators' `memledger replay ...` (rebuild, verify, status, dead letters) and `memledger ledger trim`.

A thin layer over `replay`: options in, a progress bar while it works, a table or JSON out.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich import box
from rich.table import Table

from projections.registry import PROJECTIONS

from .common import YesOpt, console, group, open_app, print_json

if TYPE_CHECKING:
    from replay.deadletters import DeadLetter, RedriveOutcome
    from replay.rebuild import Progress as Step
    from replay.rebuild import RebuildPlan, RebuildResult
    from replay.status import StatusRow
    from replay.trim import TrimPoint
    from replay.verify import VerifyResult

EXIT_DIFFERENT = 9  # `replay verify`: the live read model differs from a rebuild
EXIT_CANCELLED = 130  # Ctrl-C

replay_app = group("Rebuild, verify and inspect the read models.")
ledger_app = group("Maintain the ledger itself.")

NameArg = Annotated[str, typer.Argument(help=f"The projection: one of {', '.join(PROJECTIONS)}.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
BatchOpt = Annotated[int | None, typer.Option(
    "--batch", min=1, max=50_000, show_default=False, help="Events per transaction (default: the replay's own).")]
ProjectionOpt = Annotated[str | None, typer.Option("--projection", "-p", help="Only this projection.")]
ProjectionsOpt = Annotated[list[str] | None, typer.Option(
    "--projection", "-p", help="Only this projection (repeatable).")]
WorkersOpt = Annotated[int, typer.Option("--workers", "-w", min=0, max=64, help=(
    "Processes replaying partitions in parallel (the fold is Python: one core each); "
    "0: one per CPU for a large history, else 1."))]


def register(app: typer.Typer) -> None:
    app.add_typer(replay_app, name="replay")
    app.add_typer(ledger_app, name="ledger")


# -- progress ----------------------------------------------------------------------------


@contextmanager
def progress_bar(label: str, quiet: bool = False) -> Iterator[Callable[[Step], None]]:
    """A bar showing events applied, events/s, the position reached and the ETA."""
    if quiet:
        yield lambda p: None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]:>9} ev/s"), TextColumn("{task.fields[position]}"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False)
    started = time.monotonic()
    with bar:
        task = bar.add_task(label, total=None, rate="-", position="")

        def update(p: Step) -> None:
            rate = p.applied / max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=p.applied, total=max(p.total, p.applied), description=f"{label} ({p.phase})",
                       rate=f"{rate:,.0f}", position=f"p{p.partition} {p.position}" if p.partition >= 0 else "")

        yield update


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM cancels like Ctrl-C: the batch in flight rolls back, the live model is untouched."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cancelled(name: str, what: str) -> typer.Exit:
    console.print(f"cancelled: the live {name!r} read model is untouched; {what}")
    return typer.Exit(EXIT_CANCELLED)


# -- replay rebuild ----------------------------------------------------------------------


@replay_app.command("rebuild")
def rebuild_command(
    name: NameArg,
    partition: Annotated[list[int] | None, typer.Option(
        "--partition", help="Only advance the shadow for this partition (repeatable); no swap.")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="Replay only events appended up to this ISO 8601 time; no swap.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Replay only up to this stream id; no swap.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be replayed; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before swapping.")] = False,
    batch: BatchOpt = None, workers: WorkersOpt = 0, json: JsonOpt = False,
) -> None:
    """Rebuild a read model from the archive plus the stream into a shadow, catch up, swap it in.

    Queries keep reading the old version until the swap. Resumable: after a crash or
    Ctrl-C, run the same command again. With --partition, --until or --to it only
    advances the shadow; a later plain `replay rebuild NAME` finishes and swaps.
    """
    with open_app() as app:
        plan = app.plan_rebuild(name, partition, until, to)
        if not go_ahead(plan, dry_run, yes, json):
            return
        with cancellable(name, f"run the same command to resume from {plan.shadow}, or "
                               f"`memledger replay discard {name}` to drop it"), \
                progress_bar(f"rebuild {name}", quiet=json) as report:
            result = app.rebuild(name, partition, until, to, batch, report, workers or auto_workers(plan))
    _print_rebuilt(result, plan, json)


def go_ahead(plan: RebuildPlan, dry_run: bool, yes: bool, json: bool) -> bool:
    """Show the plan (a --json rebuild prints only its result); False for a dry run; ask before a swap."""
    if dry_run or not json:
        _show_plan(plan, json)
    if dry_run:
        return False
    if plan.swap and not yes:
        typer.confirm(f"Swap the rebuilt {plan.projection!r} in for the live one when done?", abort=True)
    return True


@contextmanager
def cancellable(name: str, what: str) -> Iterator[None]:
    """Ctrl-C and SIGTERM cancel: the batch in flight rolls back, the live model is untouched."""
    try:
        with sigterm_interrupts():
            yield
    except KeyboardInterrupt:
        raise _cancelled(name, what) from None


def _print_rebuilt(result: RebuildResult, plan: RebuildPlan, json: bool) -> None:
    if json:
        print_json({**asdict(result), "rate": result.rate})
        return
    name = result.projection
    done = "swapped in; the live projector continues from there" if result.swapped else \
        f"left in {plan.shadow}; run `memledger replay rebuild {name}` to finish and swap"
    console.print(f"{name}: applied {result.applied:,} events in {result.seconds:.1f}s "
                  f"({result.rate:,.0f} events/s); {done}")


def auto_workers(plan: RebuildPlan) -> int:
    """The processes a rebuild gets when --workers is not given (replay.rebuild.auto_workers)."""
    from replay.rebuild import auto_workers as choose

    return choose(plan)


def _show_plan(plan: RebuildPlan, json: bool) -> None:
    if json:
        print_json(asdict(plan))
        return
    table = Table("partition", "resume after", "events to replay (est.)", title=(
        f"rebuild {plan.projection} into {plan.shadow}" + (" (resuming)" if plan.resuming else "")
        + (f", up to {plan.bound}" if plan.bound else "") + ("" if plan.swap else ", no swap")))
    for p in plan.partitions:
        table.add_row(str(p.partition), p.start, f"{p.estimate:,}")
    console.print(table)


# -- replay verify -----------------------------------------------------------------------


@replay_app.command("verify")
def verify_command(
    name: NameArg,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the rebuilt shadow for inspection.")] = False,
    batch: BatchOpt = None,
    json: JsonOpt = False,
) -> None:
    """Rebuild into a shadow of its own and compare with the live read model; exit 9 when they differ."""
    with open_app() as app, cancellable(name, "nothing was compared"), \
            progress_bar(f"verify {name}", quiet=json) as report:
        result = app.verify(name, batch, report, keep)
    _print_verified(result, json)
    if not result.agree:
        raise typer.Exit(EXIT_DIFFERENT)


def _print_verified(result: VerifyResult, json: bool) -> None:
    name = result.projection
    if json:
        print_json(asdict(result))
    elif result.agree:
        sizes = ", ".join(f"{part} {digest.split(':')[0]} rows" for part, digest in result.live.items())
        console.print(f"{name}: the live read model equals a rebuild from history ({sizes})")
    else:
        console.print(f"{name}: the live read model DIFFERS from a rebuild from history at "
                      f"{dict(sorted(result.checkpoints.items()))}:")
        for line in result.differences:
            console.print(f"  {line}")


# -- replay status / discard -------------------------------------------------------------


@replay_app.command("status")
def status_command(projection: ProjectionsOpt = None, json: JsonOpt = False) -> None:
    """Per projection and partition: checkpoint, head, lag, schema version, state, dead letters."""
    with open_app() as app:
        rows = app.replay_status(projection)
    if json:
        print_json([asdict(r) for r in rows])
        return
    console.print(status_table(rows))
    for name, positions in shadows(rows).items():
        console.print(f"{name}: a rebuild shadow stands at {', '.join(positions)}; "
                      f"`memledger replay rebuild {name}` resumes it")


def status_table(rows: list[StatusRow]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("projection", no_wrap=True, min_width=9)
    table.add_column("p", justify="right", min_width=1)
    table.add_column("checkpoint", overflow="fold", min_width=10)  # stream ids fold on narrow terminals
    table.add_column("head", overflow="fold", min_width=10)
    table.add_column("lag", justify="right", min_width=3)
    table.add_column("version", min_width=3)
    table.add_column("state", no_wrap=True, min_width=10)
    table.add_column("dead", justify="right", min_width=4)
    for r in rows:
        version = "-" if r.version is None else str(r.version)
        if r.version not in (None, r.code_version):
            version += f"→{r.code_version}"  # stored version, then the code's
        table.add_row(r.projection, str(r.partition), r.checkpoint, r.head or "-", str(r.lag), version, r.state,
                      str(r.dead_letters))
    return table


def shadows(rows: list[StatusRow]) -> dict[str, list[str]]:
    """Where each projection's rebuild shadow stands, per partition."""
    found: dict[str, list[str]] = {}
    for r in rows:
        if r.shadow_checkpoint is not None:
            found.setdefault(r.projection, []).append(f"p{r.partition} {r.shadow_checkpoint}")
    return found


@replay_app.command("discard")
def discard_command(name: NameArg, json: JsonOpt = False) -> None:
    """Drop a rebuild's shadow (the live read model is not touched)."""
    with open_app() as app:
        dropped = app.discard_shadow(name)
    if json:
        print_json(asdict(dropped))
    else:
        console.print(f"{name}: " + ("dropped " + dropped.where if dropped.existed else "no rebuild shadow to drop"))


# -- replay dead-letters -----------------------------------------------------------------


@replay_app.command("dead-letters")
def dead_letters_command(
    projection: ProjectionOpt = None,
    letter: Annotated[list[int] | None, typer.Option("--id", help="Only this dead letter (repeatable).")] = None,
    again: Annotated[bool, typer.Option("--redrive", help="Re-apply the open dead letters.")] = False,
    include_resolved: Annotated[bool, typer.Option("--all", help="Also list re-driven ones.")] = False,
    json: JsonOpt = False,
) -> None:
    """List dead-lettered events; with --redrive, re-apply them (refused when out of order)."""
    with open_app() as app:
        if not again:
            _print_letters(app.dead_letters(projection, include_resolved, letter), json, [])
            return
        outcomes = app.redrive(projection, letter)
    _print_letters([o.letter for o in outcomes], json, outcomes)
    if any(o.outcome != "redriven" for o in outcomes):
        raise typer.Exit(1)


def _print_letters(letters: list[DeadLetter], json: bool, outcomes: list[RedriveOutcome]) -> None:
    """`outcomes`, when re-driving, is parallel to `letters`."""
    paired: list[RedriveOutcome | None] = list(outcomes) or [None] * len(letters)
    if json:
        print_json([{**asdict(d), **({"outcome": o.outcome, "detail": o.detail} if o else {})}
                    for d, o in zip(letters, paired)])
        return
    table = Table("id", "projection", "position", "event", "error", "outcome" if outcomes else "re-driven",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for d, o in zip(letters, paired):
        last: Any = (f"{o.outcome}: {o.detail}" if o else
                     f"{d.redriven_at:%Y-%m-%d %H:%M:%S}" if d.redriven_at else "-")
        table.add_row("-" if d.id is None else str(d.id), d.projection, f"{d.partition}/{d.stream_id}",
                      f"{d.event_type or '?'} {d.event_id or ''}".strip(), d.error[:200], last)
    console.print(table if letters else "no dead letters")


# -- ledger trim -------------------------------------------------------------------------


@ledger_app.command("trim")
def trim_command(
    older_than: Annotated[float, typer.Option("--older-than", min=0, metavar="DAYS",
                                              help="Trim entries older than this many days.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the trim points; change nothing.")] = False,
    yes: YesOpt = False,
    json: JsonOpt = False,
) -> None:
    """Trim the streams below what the archive and every projection have checkpointed (never by length)."""
    with open_app() as app:
        if dry_run or (not yes and not json):
            _print_trim(app.plan_trim(older_than), json)
        if dry_run:
            return
        if not yes:
            typer.confirm("Trim these partitions? (the archive keeps the history)", abort=True)
        _print_trim(app.trim(older_than), json)


def _print_trim(points: list[TrimPoint], json: bool) -> None:
    if json:
        print_json([asdict(p) for p in points])
        return
    table = Table("partition", "trim below", "limited by", "removed", "trimmed through")
    for p in points:
        table.add_row(str(p.partition), p.min_id or "-", p.held_by, str(p.removed), p.trimmed_through or "-")
    console.print(table)
