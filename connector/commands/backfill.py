"""``doopage-sheets backfill``: import history and CSV exports, and write them to the sheets.

The work is in :mod:`connector.sync.backfill`; this module reads the options and files, shows the progress
and prints the summary.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from connector.commands.common import config_option, exit_on_config_error, load_or_exit, setup_logging
from connector.errors import ConfigError, StoreError
from connector.import_registry import content_digest, remember_as_of, remembered_as_of
from connector.settings import Settings
from connector.sheets.backend import sheets_backend
from connector.store import open_work_store
from connector.sync.backfill import (
    CUSTOMER_FIELDS,
    MAX_ROWS_PER_WRITE,
    ORDER_FIELDS,
    BackfillInput,
    CsvKind,
    CsvOptions,
    ImportCounts,
    UsageError,
    WriteTotals,
    file_as_of,
    import_records,
    parse_column_map,
    parse_datetime_ms,
    parse_timezone,
    pending_backfill,
    read_csv,
    read_jsonl,
    write_backfill,
)
from connector.untrusted import printable

F = TypeVar("F", bound=Callable[..., object])

_err = Console(stderr=True)


def _field_list(fields: dict[str, str]) -> str:
    return "\b\n" + "\n".join(f"  {name:<22} {meaning}" for name, meaning in fields.items())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def backfill() -> None:
    """Import past events or CSV exports, and write them to the sheets.

    Every import validates the whole file first: if any line is bad, nothing is imported and the bad
    lines are listed (exit status 2), unless --skip-invalid is given. Imported events are stored in the
    inbox (deduplicated: importing a file again stores nothing new), then written in passes of at most
    5,000 rows per write. An interrupted run is finished by running it again, or by `backfill resume`.

    Imported data carries the time the file was true (--as-of, by default the file's modification time
    when its content was first imported): newer webhooks win over it, field by field. A file downloaded
    again or touched, with the same content, is recognised by its content and imports nothing new.
    """


def _common_options(func: F) -> F:
    """The options every import takes."""
    options = [
        config_option,
        click.option(
            "--skip-invalid", is_flag=True, help="Import the valid lines and list the skipped ones."
        ),
        click.option(
            "--check", "check_only", is_flag=True, help="Validate the file and report; import nothing."
        ),
        click.option(
            "--allow-unmapped",
            is_flag=True,
            help="Import events of companies the mapping does not name (kept until they are mapped) "
            "instead of refusing the file.",
        ),
        click.option(
            "--as-of",
            "as_of",
            default=None,
            metavar="TIME",
            help="When the file's content was true: ISO 8601 (naive: in --timezone) or epoch seconds. "
            "Default: the file's modification time.",
        ),
        click.option(
            "--rows-per-write",
            type=click.IntRange(1, MAX_ROWS_PER_WRITE),
            default=MAX_ROWS_PER_WRITE,
            show_default=True,
            help="Most customers or orders written per pass, one row each (fewer when that many would not fit one write request).",
        ),
        click.option(
            "--timezone",
            "timezone_name",
            default="UTC",
            show_default=True,
            help="IANA timezone of times written without an offset.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _csv_options(func: F) -> F:
    """The options of the CSV imports."""
    options = [
        click.option(
            "--column",
            "column_specs",
            multiple=True,
            required=True,
            metavar="FIELD=HEADER",
            help="Read FIELD from the CSV column headed HEADER (repeat for each field; quote the whole "
            'option when HEADER has spaces: --column "customer.name=Full name").',
        ),
        click.option(
            "--company",
            "company_id",
            type=int,
            default=None,
            help="The DooPage company_id the rows belong to; needed when the mapping has several companies.",
        ),
        click.option(
            "--delimiter", default=",", show_default=True, help="The CSV field delimiter (one character)."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@backfill.command("events")
@_common_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def events(
    config_path: Path,
    file: Path,
    skip_invalid: bool,
    check_only: bool,
    allow_unmapped: bool,
    as_of: str | None,
    rows_per_write: int,
    timezone_name: str,
) -> None:
    """Import FILE, one DooPage webhook body (JSON, exactly as POSTed) per line, and write it.

    Each line is validated as the webhook route validates a body. Events DooPage sends without a
    timestamp take the as-of time plus their line number (in milliseconds) as their time, so the file's
    order is kept. Lines of an event type this version does not know are kept, as the service keeps them.
    """
    settings = load_or_exit(config_path)
    as_of_ms = _as_of(settings, as_of, timezone_name, file, remember=not check_only)
    with file.open("rb") as stream:
        parsed = read_jsonl(stream, as_of_ms, settings.server.body_limit)
    _import_and_write(settings, file, parsed, skip_invalid, check_only, allow_unmapped, rows_per_write)


@backfill.command(
    "customers",
    epilog="Fields of --column:\n\n" + _field_list(CUSTOMER_FIELDS),
)
@_common_options
@_csv_options
@click.option(
    "--tag-separator", default=",", show_default=True, help="What separates tags (and tag ids) in a cell."
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def customers(
    config_path: Path,
    file: Path,
    column_specs: tuple[str, ...],
    company_id: int | None,
    delimiter: str,
    tag_separator: str,
    skip_invalid: bool,
    check_only: bool,
    allow_unmapped: bool,
    as_of: str | None,
    rows_per_write: int,
    timezone_name: str,
) -> None:
    """Import a CSV export of customers (one row each, header first) and write it.

    Example:

    \b
      doopage-sheets backfill customers --config config/example.toml customers.csv \\
          --column customer.id=ID --column "customer.name=Full name" \\
          --column tags=Tags --tag-separator ";"

    Each row becomes the DooPage events that set what it shows (customer_updated with the name, and
    for cells that are not empty note_changed, customer_pipeline_updated and tag_set). An empty cell
    changes nothing, and tags are only added. Tags and stages without an id column get an id derived
    from their name: a negative number, the same for the same name. A customer id that appears on two
    rows is an invalid row.
    """
    _import_csv("customers", config_path, file, column_specs, company_id, delimiter, tag_separator,
                skip_invalid, check_only, allow_unmapped, as_of, rows_per_write, timezone_name)  # fmt: skip


@backfill.command(
    "orders",
    epilog="Fields of --column:\n\n" + _field_list(ORDER_FIELDS),
)
@_common_options
@_csv_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def orders(
    config_path: Path,
    file: Path,
    column_specs: tuple[str, ...],
    company_id: int | None,
    delimiter: str,
    skip_invalid: bool,
    check_only: bool,
    allow_unmapped: bool,
    as_of: str | None,
    rows_per_write: int,
    timezone_name: str,
) -> None:
    """Import a CSV export of orders (one row each, header first) and write it.

    Example:

    \b
      doopage-sheets backfill orders --config config/example.toml orders.csv \\
          --column order.id=Order --column order.created_at=Created \\
          --column order.payment_status=Payment

    Each row becomes one order_updated event. Times are epoch seconds or ISO 8601 (without an offset:
    in --timezone). An empty cell changes nothing. An order id that appears on two rows is an invalid row.
    """
    _import_csv("orders", config_path, file, column_specs, company_id, delimiter, ",",
                skip_invalid, check_only, allow_unmapped, as_of, rows_per_write, timezone_name)  # fmt: skip


@backfill.command("resume")
@config_option
@click.option(
    "--rows-per-write",
    type=click.IntRange(1, MAX_ROWS_PER_WRITE),
    default=MAX_ROWS_PER_WRITE,
    show_default=True,
    help="Most customers or orders written per pass, one row each (fewer when that many would not fit one write request).",
)
def resume(config_path: Path, rows_per_write: int) -> None:
    """Write the imported events an interrupted backfill left unwritten."""
    settings = load_or_exit(config_path)
    setup_logging(settings, "warning")
    totals = _write(settings, rows_per_write)
    _print_write(totals)
    sys.exit(_exit_status(totals))


def _import_csv(
    kind: CsvKind,
    config_path: Path,
    file: Path,
    column_specs: tuple[str, ...],
    company_id: int | None,
    delimiter: str,
    tag_separator: str,
    skip_invalid: bool,
    check_only: bool,
    allow_unmapped: bool,
    as_of: str | None,
    rows_per_write: int,
    timezone_name: str,
) -> None:
    settings = load_or_exit(config_path)
    zone = _or_usage_exit(lambda: parse_timezone(timezone_name))
    columns = _or_usage_exit(lambda: parse_column_map(kind, column_specs))
    if len(delimiter) != 1:
        _usage_exit("--delimiter must be one character")
    if not tag_separator:
        _usage_exit("--tag-separator must not be empty")
    options = CsvOptions(
        kind=kind,
        columns=columns,
        company_id=_company(settings, company_id),
        as_of_ms=_as_of(settings, as_of, timezone_name, file, remember=not check_only),
        tag_separator=tag_separator,
        delimiter=delimiter,
        timezone=zone,
    )
    try:
        with file.open(encoding="utf-8-sig", newline="") as stream:
            parsed = _or_usage_exit(lambda: read_csv(stream, options))
    except UnicodeDecodeError as exc:
        _usage_exit(f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start})")
    _import_and_write(settings, file, parsed, skip_invalid, check_only, allow_unmapped, rows_per_write)


_T = TypeVar("_T")


def _or_usage_exit(make: Callable[[], _T]) -> _T:
    try:
        return make()
    except UsageError as exc:
        _usage_exit(str(exc))


def _usage_exit(message: str) -> NoReturn:
    click.echo(printable(f"backfill: {message}"), err=True)
    sys.exit(2)


def _as_of(settings: Settings, text: str | None, timezone_name: str, file: Path, *, remember: bool) -> int:
    """The as-of time in epoch ms: the option's; else the one an earlier import of the same content used
    (see connector.import_registry); else the file's modification time, remembered for that content."""
    if text is None:
        digest = content_digest(file)
        known = remembered_as_of(settings.data_dir, digest)
        if known is not None:
            return known
        as_of_ms = file_as_of(file)
        return remember_as_of(settings.data_dir, digest, as_of_ms, file.name) if remember else as_of_ms
    zone = _or_usage_exit(lambda: parse_timezone(timezone_name))
    try:
        return parse_datetime_ms(text, zone)
    except ValueError as exc:
        _usage_exit(f"--as-of: {exc}")


def _company(settings: Settings, company_id: int | None) -> int:
    """The company the CSV rows belong to: the option, or the mapping's only company."""
    if company_id is not None:
        return company_id
    from connector.sync.mapping import load_mapping

    with exit_on_config_error():
        mapping = load_mapping(settings)
    ids = [company.company_id for company in mapping.companies]
    if len(ids) != 1:
        known = ", ".join(str(i) for i in ids) or "none"
        _usage_exit(f"--company is needed: the mapping has {len(ids)} companies (mapped: {known})")
    return ids[0]


@contextmanager
def _progress() -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_err,
        transient=False,
    )
    with progress:
        yield progress


def _import_and_write(
    settings: Settings,
    file: Path,
    parsed: BackfillInput,
    skip_invalid: bool,
    check_only: bool,
    allow_unmapped: bool,
    rows_per_write: int,
) -> None:
    """Report problems, store the records (unless refused), write every backfill event, summarise."""
    if parsed.problems:
        _err.print(f"{file}: {len(parsed.problems)} of {parsed.rows} lines cannot be imported:", markup=False)
        for problem in parsed.problems:
            _err.print(f"  {printable(problem)}", markup=False, highlight=False)
    click.echo(
        f"{file}: {parsed.rows} rows read, {len(parsed.records)} events, {len(parsed.problems)} invalid"
    )
    if check_only:
        sys.exit(2 if parsed.problems else 0)
    if parsed.problems and not skip_invalid:
        click.echo("nothing imported: fix the lines above, or run again with --skip-invalid", err=True)
        sys.exit(2)
    _refuse_unmapped(settings, parsed, allow_unmapped)
    setup_logging(settings, "warning")
    with _progress() as progress:
        task = progress.add_task("events stored", total=len(parsed.records))
        try:
            counts = import_records(settings, parsed.records, lambda n: progress.advance(task, n))
        except StoreError as exc:
            click.echo(printable(f"backfill: the store could not store the events: {exc}"), err=True)
            sys.exit(1)
    _print_import(parsed, counts)
    totals = _write(settings, rows_per_write)
    _print_write(totals)
    sys.exit(_exit_status(totals))


def _refuse_unmapped(settings: Settings, parsed: BackfillInput, allow_unmapped: bool) -> None:
    """Stop (exit 1) before importing events that nothing would write: their company is not mapped."""
    from connector.sync.mapping import load_mapping

    with exit_on_config_error():
        mapping = load_mapping(settings)
    mapped = {company.company_id for company in mapping.companies}
    unmapped = sorted({record.company_id for record in parsed.records} - mapped)
    if not unmapped:
        return
    names = ", ".join(str(company_id) for company_id in unmapped)
    where = f"{mapping.file}: company {names} {'is' if len(unmapped) == 1 else 'are'} not mapped"
    if allow_unmapped:
        click.echo(f"{where}: their events are kept and written once the company is mapped", err=True)
        return
    click.echo(
        f"nothing imported: {where}, so nothing would be written. Add the company to the mapping, or run "
        "again with --allow-unmapped to keep its events until it is mapped",
        err=True,
    )
    sys.exit(1)


def _pending(settings: Settings) -> tuple[int, int]:
    """Rows and events the backfill has yet to write; exit 1 saying why when the store cannot be read."""
    try:
        store = open_work_store(settings)
        try:
            return pending_backfill(store)
        finally:
            store.close()
    except StoreError as exc:
        click.echo(printable(f"backfill: the store cannot be read: {exc}"), err=True)
        sys.exit(1)


def _write(settings: Settings, rows_per_write: int) -> WriteTotals:
    """Write every backfill event, with a progress bar of rows.

    Without Google credentials it writes to the built-in local Sheets server, as `serve` does (the one
    `serve` runs, when it is running). A configuration mistake stops it with the events kept.
    """
    from connector.sync.mapping import load_mapping

    rows, events = _pending(settings)
    try:
        with sheets_backend(settings) as backend, _progress() as progress:
            mapping = load_mapping(backend)
            task = progress.add_task("rows written", total=rows)
            return write_backfill(
                backend,
                mapping,
                rows_per_write=rows_per_write,
                on_pass=lambda totals: progress.update(task, completed=totals.rows),
            )
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        if events:
            click.echo(
                f"the {events} imported events are kept: `doopage-sheets backfill resume` writes them "
                "once this is fixed",
                err=True,
            )
        sys.exit(2)


def _print_import(parsed: BackfillInput, counts: ImportCounts) -> None:
    skipped = f", {len(parsed.problems)} invalid lines skipped" if parsed.problems else ""
    unknown = f", {parsed.unknown} of an unknown event type (kept, not written)" if parsed.unknown else ""
    click.echo(f"events: {counts.stored} stored, {counts.duplicate} already stored{skipped}{unknown}")


def _print_write(totals: WriteTotals) -> None:
    if totals.done == 0 and totals.unrouted:
        click.echo(
            f"written: nothing; {totals.unrouted} events belong to companies without a mapping "
            "(kept, and written once the company is mapped)"
        )
        return
    click.echo(
        f"written: {totals.rows} rows ({totals.done} events) in {totals.passes} "
        f"pass{'' if totals.passes == 1 else 'es'}, "
        f"{totals.sheets_requests} Sheets requests, {totals.seconds:.1f} s"
    )
    if totals.failed:
        click.echo(f"failed: {totals.failed} events parked (see `doopage-sheets failed list`)", err=True)
    if totals.unrouted:
        click.echo(f"unrouted: {totals.unrouted} events of companies without a mapping (kept)", err=True)
    if totals.remaining:
        click.echo(
            f"not finished: {totals.remaining} events still to write; run `doopage-sheets backfill resume`",
            err=True,
        )


def _exit_status(totals: WriteTotals) -> int:
    return 1 if totals.failed or totals.remaining else 0
