"""Command line -> validated config and day range -> pipeline.run (also under spark-submit and Databricks)."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date, datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Sequence

from jobs.config import ConfigError, InputFormat, JobConfig, OutputSpec, load_config
from jobs.errors import AccountingError, ConflictError, InputError, OutputError
from jobs.inference import ExperimentError

log = logging.getLogger(__name__)

SAMPLE_CONFIG = Path("conf/sample.yaml")  # the sample's rules: the defaults, with purchase as its conversion


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return int(text)


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log debug lines, Spark's included")
    parser = argparse.ArgumentParser(prog="sessionlake", description="Sessionize user events into Delta tables.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", parents=[common], help="sessionize a day or a range of days")
    run.add_argument("--config", type=Path, required=True, help="the job's YAML config")
    run.add_argument("--date", type=_iso_date, help="one reporting day, YYYY-MM-DD")
    run.add_argument("--from", dest="first_day", type=_iso_date, help="first reporting day of a range")
    run.add_argument("--to", dest="last_day", type=_iso_date, help="last reporting day of a range (inclusive)")
    run.add_argument("--day-before", type=_iso_date, metavar="DATE",
                     help="the reporting day before DATE: for schedulers that pass the date they run on")
    run.add_argument("--complete-through", type=_iso_date, metavar="DATE",
                     help="every UTC input partition up to DATE has landed, with or without rows (input.complete_through)")
    run.add_argument("--complete-before", type=_iso_date, metavar="DATE",
                     help="every UTC input partition before DATE has landed: for schedulers that pass the date they "
                          "run on")
    run.add_argument("--input", help="override input.path (in place of input.table, if the config has one)")
    run.add_argument("--input-format", choices=[f.value for f in InputFormat], help="override input.format")
    run.add_argument("--output", help="override output.path (in place of output.catalog, if the config has one)")

    experiments = commands.add_parser(
        "experiments", parents=[common], help="print an experiment's variants with their intervals and lifts"
    )
    experiments.add_argument("--config", type=Path, help="the job's YAML config, for where its tables are")
    experiments.add_argument("--output", help="the tables' folder: in place of the config's output, or without a config")
    experiments.add_argument("--experiment", required=True, help="the experiment id")
    experiments.add_argument("--date", type=_iso_date,
                             help="the window ending on this day, YYYY-MM-DD (default: the experiment to date)")
    experiments.add_argument("--by", metavar="SEGMENT",
                             help="a table per value of this breakdown (user_type: new or returning users)")

    report = commands.add_parser(
        "report", parents=[common], help="write the tables' HTML report for product managers",
        description="Write one self-contained HTML page from the tables: headline tiles, trends by breakdown, "
                    "engagement, the action mix, data quality and experiments. Tables in a folder are read "
                    "without Spark; catalog tables (output.catalog) through Spark.",
    )
    report.add_argument("--config", type=Path, help="the job's YAML config, for where its tables are")
    report.add_argument("--output", help="the tables' folder (the input of the report): in place of the config's "
                                         "output, or without a config")
    report.add_argument("--html", type=Path, default=Path("report.html"),
                        help="the page to write (default %(default)s)")
    report.add_argument("--from", dest="first_day", type=_iso_date,
                        help="the first day of the range: every period with a day in it is shown, whole")
    report.add_argument("--to", dest="last_day", type=_iso_date, help="the last day of the range")

    sample = commands.add_parser("sample", parents=[common], help="generate sample events and sessionize them")
    sample.add_argument("--config", type=Path, default=SAMPLE_CONFIG, help="config for the rules (default %(default)s)")
    sample.add_argument("--events", default="data/sample/events", help="where to write the events, replacing them")
    sample.add_argument("--output", default="data/sample/out", help="where to write the tables")
    sample.add_argument("--users", type=_positive_int, default=3_000)
    sample.add_argument("--days", type=_positive_int, default=7)
    sample.add_argument("--first-day", type=_iso_date, default=date(2026, 11, 1))
    return parser


def _day_range(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[date, date]:
    given = [f for f, v in (("--date", args.date), ("--day-before", args.day_before)) if v is not None]
    if args.first_day is not None or args.last_day is not None:
        given.append("--from/--to")
    if len(given) > 1:
        parser.error(f"{' and '.join(given)} cannot be combined: give one")
    if args.date is not None:
        return args.date, args.date
    if args.day_before is not None:
        day = args.day_before - timedelta(days=1)
        return day, day
    if args.first_day is None or args.last_day is None:
        parser.error("give --date D, --day-before D, or both --from D1 and --to D2")
    if args.first_day > args.last_day:
        parser.error(f"--from {args.first_day} is after --to {args.last_day}")
    return args.first_day, args.last_day


def _complete_through(parser: argparse.ArgumentParser, args: argparse.Namespace) -> date | None:
    if args.complete_through is not None and args.complete_before is not None:
        parser.error("--complete-through and --complete-before cannot be combined: give one")
    if args.complete_before is not None:
        return args.complete_before - timedelta(days=1)
    return args.complete_through


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("py4j").setLevel(logging.DEBUG if verbose else logging.WARNING)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line as the job reads it; for `run`, with the reporting days resolved into first_day and
    last_day. Exits 2 with a usage message when it is not valid."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    # Errors are the command's own: its usage line is the one that helps.
    command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
    if args.command == "run":
        args.first_day, args.last_day = _day_range(command, args)
        args.complete_through = _complete_through(command, args)
    if args.command == "report" and args.first_day and args.last_day and args.first_day > args.last_day:
        command.error(f"--from {args.first_day} is after --to {args.last_day}")
    if args.command in ("experiments", "report") and args.config is None and args.output is None:
        command.error("give --config (the job's config) or --output (the tables' folder)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, validate the config before Spark starts, run the job; 0 on success, 1 or 2 on errors."""
    args = parse_args(argv)
    _configure_logging(args.verbose)
    try:
        if args.command == "run":
            first_day, last_day = args.first_day, args.last_day
            config = load_config(
                args.config, input_path=args.input, input_format=args.input_format, output_path=args.output,
                complete_through=args.complete_through,
            )
            _run(config, first_day, last_day, args.verbose)
        elif args.command == "report":
            _report(_tables_location(args), args.html, args.first_day, args.last_day, args.verbose)
        elif args.command == "experiments":
            print(_experiment(_tables_location(args), args.experiment, args.date, args.by, args.verbose))
        else:
            # The config gives the rules; the sample has its own paths, so real input is never overwritten.
            config = load_config(args.config, input_path=args.events, input_format="parquet", output_path=args.output)
            _sample(config, args.users, args.first_day, args.days, args.verbose)
    except ConfigError as error:
        print(f"sessionlake: error: {error}", file=sys.stderr)
        return 2
    except (InputError, OutputError, AccountingError, ExperimentError) as error:
        print(f"sessionlake: error: {error}", file=sys.stderr)
        return 1
    except ConflictError as error:
        print(f"sessionlake: error: {error}", file=sys.stderr)
        return 3
    return 0


def _tables_location(args: argparse.Namespace) -> OutputSpec:
    # The commands that only read the tables: the config's output (--output overriding it), or --output alone.
    if args.config is None:
        return OutputSpec(path=args.output)
    return load_config(args.config, output_path=args.output).output


def _package() -> str:
    # Which code runs matters on a cluster: an installed wheel, or one shipped with --py-files.
    try:
        version = metadata.version("sessionlake")
    except metadata.PackageNotFoundError:
        version = "(no package metadata)"
    return f"sessionlake {version}, jobs from {Path(__file__).resolve().parent.parent}"


def entry_point() -> None:
    """The `sessionlake` command: main() with its exit code raised. A console script exits with main()'s return
    value, but a scheduler that calls the entry point as a function (a Databricks python_wheel_task) ignores it: a
    failed run must raise to fail the task."""
    code = main()
    if code:
        raise SystemExit(code)


def _run(config: JobConfig, first_day: date, last_day: date, verbose: bool) -> None:
    from jobs import pipeline
    from jobs.spark_session import get_spark

    log.info(_package())
    spark = get_spark(spark_log_level="INFO" if verbose else None)
    records = pipeline.run(spark, config, first_day, last_day)
    print(pipeline.summary(spark, config, first_day, last_day, records))


def _experiment(
    output: OutputSpec, experiment_id: str, window_end: date | None, segment: str | None, verbose: bool
) -> str:
    from jobs import pipeline
    from jobs.spark_session import get_spark

    spark = get_spark(spark_log_level="INFO" if verbose else None)
    return pipeline.experiment_report(spark, output, experiment_id, window_end, segment)


def _report(output: OutputSpec, html: Path, first_day: date | None, last_day: date | None, verbose: bool) -> None:
    # No Spark for tables in a folder: delta-rs reads them, so the report runs where only the report extra is
    # installed. Catalog tables (a Databricks job) are found through Spark, which is there.
    if html.is_dir():
        raise ConfigError(f"--html {html} is a folder: give the page's file name, e.g. {html / 'report.html'}")
    if output.path is not None and "://" not in output.path and not Path(output.path).is_dir():
        # A mistyped folder would otherwise make a page of "no table yet" notes and exit 0.
        raise InputError(f"the tables' folder {output.path} does not exist: give --output the job's output.path")
    try:
        import vl_convert

        from jobs.report import build_report
        from jobs.report_read import read_report_tables
    except ImportError as error:
        raise _without_report_extra(error) from None

    spark = None
    if output.catalog is not None:
        from jobs.spark_session import get_spark

        spark = get_spark(spark_log_level="INFO" if verbose else None)
    try:
        tables = read_report_tables(output, first_day, last_day, spark)
    except ImportError as error:  # deltalake, imported only for tables in a folder
        raise _without_report_extra(error) from None
    today = datetime.now(timezone.utc).date()
    page = build_report(tables, f"sessionlake: {output.location}", today, vl_convert.javascript_bundle(),
                        first_day, last_day)
    try:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(page, encoding="utf-8")
    except OSError as error:
        raise OutputError(f"cannot write the page to {html}: {error.strerror}") from None
    log.info("report: %s (%d bytes)", html, len(page.encode("utf-8")))
    print(f"report: {html.resolve().as_uri()}")


def _without_report_extra(error: ImportError) -> ConfigError:
    return ConfigError(f"sessionlake report needs the report extra ({error.name} is missing): "
                       "pip install 'sessionlake[report]'")


def _sample(config: JobConfig, users: int, first_day: date, days: int, verbose: bool) -> None:
    from jobs.sample import generate_events, write_sample
    from jobs.spark_session import get_spark

    last_day = first_day + timedelta(days=days - 1)
    log.info("writing %d users' sample events for %s..%s to %s", users, first_day, last_day, config.input.path)
    spark = get_spark(spark_log_level="INFO" if verbose else None)
    write_sample(generate_events(spark, users=users, days=days, first_day=first_day), config.input.path)
    _run(config, first_day, last_day, verbose)  # get_spark() hands back the same session
