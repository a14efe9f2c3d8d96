"""The `alertgw` command line."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from gateway import cli_tools, logs, pidlock
from gateway.closedpipe import stop_quietly_on_closed_stdout
from gateway.config import EX_CONFIG, Config, JournalConfig, load_config
from gateway.coverage import roster_gaps, roster_overlaps
from gateway.errors import ConfigError, JournalError
from gateway.journal import Journal, StoredAlert
from gateway.reloadstatus import ReloadStatus, read_status, status_path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `alertgw` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["espa"]:  # the wiring tool has its own argument parser
        from gateway.espa.tool import main as espa_main  # noqa: PLC0415 - needs pyserial

        return espa_main(args_list[1:])
    parser = argparse.ArgumentParser(
        prog="alertgw",
        description="alertgw: alert gateway for care homes. A broken config exits 78.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    config_help = "the YAML config file, e.g. /etc/alertgw/alertgw.yaml"
    p_run = sub.add_parser(
        "run",
        help="run the gateway daemon",
        description="Run the daemon. SIGTERM/SIGINT: drain and stop; SIGHUP: reload the file.",
        epilog="Exit status: 0 stopped cleanly, 78 broken config, 1 could not start.",
    )
    p_run.add_argument("config", help=config_help)
    p_check = sub.add_parser(
        "check",
        help="validate a config file",
        description="Validate a config: a summary, and warnings (roster gaps, relative journal"
        " path), or one line per problem with file, line and key path.",
        epilog="Exit status: 0 valid (warnings included), 78 problems found.",
    )
    p_check.add_argument("config", help=config_help)
    p_hist = sub.add_parser(
        "history",
        help="show recent alerts with their timelines",
        description="Recent alerts from the journal, newest first, each with its timeline"
        " (read-only: safe beside the running daemon).",
        epilog="Exit status: 0 shown, 1 no journal or an unreadable one, 78 broken config.",
    )
    p_hist.add_argument("config", help=config_help + " (its journal.path is read)")
    p_hist.add_argument("--limit", type=_count, default=20, help="newest N alerts (default 20)")
    p_reload = sub.add_parser(
        "reload",
        help="validate a config, then make the daemon reload it",
        description="Check the file as `check` does, send SIGHUP to the daemon holding the"
        " journal's pid file, and wait for its answer.",
        epilog="Exit status: 0 applied; 1 refused, skipped, no daemon or no answer in time;"
        " 78 broken config (no signal sent).",
    )
    p_reload.add_argument("config", help=config_help + " (the file the daemon runs)")
    p_reload.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        help="seconds to wait for the daemon's answer (default 10)",
    )
    sub.add_parser("espa", help="ESPA 4.4.4 wiring tool: espa monitor PORT | espa send PORT ...")
    cli_tools.add_parsers(sub)
    args = parser.parse_args(args_list)
    if args.command in cli_tools.COMMANDS:  # offline tools take no positional config
        return cli_tools.run(args)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        print(f"alertgw: {len(exc.problems)} problem(s) in {args.config}", file=sys.stderr)
        return EX_CONFIG
    if args.command == "check":
        return stop_quietly_on_closed_stdout(lambda: _check(config))
    if args.command == "reload":
        return _reload(config, args.timeout)
    if args.command == "history":
        if not Path(config.journal.path).is_file():
            # Opening would create an empty journal and report that nothing happened.
            print(f"alertgw: no journal at {config.journal.path}", file=sys.stderr)
            return 1
        try:
            return asyncio.run(_history(config, args.limit))
        except KeyboardInterrupt:
            return 130
        except JournalError as exc:
            print(f"alertgw: {config.journal.path}: {exc}", file=sys.stderr)
            return 1
    rc = _run(config)
    leave_no_thread_behind(rc)
    return rc


def leave_no_thread_behind(rc: int, grace: float = 5.0) -> None:
    """End the process now if a worker thread outlives the daemon by `grace` seconds.

    A journal write stuck on a dying disk leaves aiosqlite's thread (not a daemon thread)
    blocked after the gateway gave up on it: the interpreter would wait for it at exit,
    deaf to SIGTERM, until systemd's SIGKILL. Logged first, so the reason is on record.
    """
    main = threading.main_thread()
    lingering = [t for t in threading.enumerate() if t is not main and not t.daemon]
    deadline = time.monotonic() + grace
    for thread in lingering:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in lingering if t.is_alive()]
    if stuck:
        structlog.get_logger("gateway.cli").error("exit_forced", threads=stuck, exit_code=rc or 1)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc or 1)


def _run(config: Config) -> int:
    """`alertgw run`: the daemon until SIGTERM; its exit status."""
    try:
        logs.configure(config.logging.level, config.logging.format)
        from gateway.app import run  # noqa: PLC0415 - keep `check` fast and driver-free

        _run_loop(run(config))
    except KeyboardInterrupt:  # a second Ctrl-C during drain
        return 130
    except JournalError as exc:
        print(f"alertgw: {config.journal.path}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the metrics port is taken, a password file unreadable
        print(f"alertgw: {exc}", file=sys.stderr)
        return 1
    return 0


def _count(text: str) -> int:
    """An argparse type: a whole number of at least 1 (SQLite reads LIMIT -1 as no limit)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of alerts, at least 1, got {text!r}"
        )
    return value


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _run_loop(main_coro: Coroutine[Any, Any, None]) -> None:
    """Run the daemon on uvloop when installed (fewer wake-up costs), else on asyncio."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        asyncio.run(main_coro)
        return
    uvloop.run(main_coro)


def summary(config: Config) -> str:
    """One short paragraph describing a valid config."""
    rooms = {d.room for d in config.devices.values()} | {
        r for z in config.zones.values() for r in z.rooms
    }
    critical = sorted({d.kind for d in config.devices.values() if config.kind(d.kind).critical})
    return (
        f"OK {config.source_file}: site {config.site.name!r} ({config.site.timezone})\n"
        f"  {len(config.sources)} source(s), {len(config.devices)} device(s) in {len(rooms)} "
        f"room(s) / {len(config.zones)} zone(s)\n"
        f"  {len(config.handsets)} handset(s), {len(config.routing)} route(s); "
        f"critical kinds: {', '.join(critical) or 'none'}\n"
        f"  journal {config.journal.path}, metrics "
        + (f"{config.metrics.host}:{config.metrics.port}" if config.metrics.enabled else "off")
    )


def _relative_journal(path: str) -> str:
    """What a relative journal.path means from here and under systemd, and what to use."""
    default = " (the default)" if path == JournalConfig().path else ""
    return (
        f"journal.path: {path}{default} is relative, so each process resolves it against its"
        f" own working directory: from here it is {os.path.abspath(path)}, under the shipped"
        f" systemd unit /var/lib/alertgw/{path}; `reload` and `history` run from another"
        " directory look elsewhere. Use an absolute path such as /var/lib/alertgw/alertgw.db"
    )


def _reload(config: Config, timeout: float) -> int:
    """Signal the running daemon (pid file beside the journal) and report its answer.

    The config is valid here. SIGHUP itself says nothing back, so wait for the daemon's
    entry in the status file: 0 when it applied the file, 1 when it refused or skipped it
    (its problem lines printed) or gave no answer within `timeout` seconds.
    """
    pidfile = Path(str(config.journal.path) + ".pid")
    statusfile = status_path(config.journal.path)
    try:
        pid = pidlock.holder(pidfile)
    except OSError as exc:
        pid, why = None, str(exc)
    else:
        why = "stale: no alertgw holds it" if pid is None else ""
    if pid is None:
        print(
            f"alertgw: config is valid, but no running daemon was signalled ({pidfile}: {why})."
            " Under systemd use: systemctl reload alertgw",
            file=sys.stderr,
        )
        return 1
    try:
        before = read_status(statusfile)  # the answer to this signal must be newer
        os.kill(pid, signal.SIGHUP)
        answer = _await_answer(statusfile, pid, before, timeout)
    except OSError as exc:
        print(f"alertgw: config is valid, but asking pid {pid} failed: {exc}", file=sys.stderr)
        return 1
    if answer is None:
        print(
            f"alertgw: no answer from alertgw (pid {pid}) within {timeout:g} s ({statusfile});"
            " its log says config_reloaded or config_reload_failed",
            file=sys.stderr,
        )
        return 1
    other = _other_file(pid, answer.file, config.source_file)
    if answer.outcome == "applied" and other is None:
        print(f"alertgw (pid {pid}) reloaded {answer.file or config.source_file}")
        return 0
    for line in answer.problems:
        print(line, file=sys.stderr)
    if other is not None:
        # SIGHUP re-reads the file the daemon started with: the one checked here is not it.
        print(
            f"alertgw: pid {pid} runs {other}, not {config.source_file}: a reload re-reads the"
            f" file the daemon was started with ({answer.outcome} {other}). Copy"
            f" {config.source_file} over {other} and reload again, or restart alertgw with it",
            file=sys.stderr,
        )
        return 1
    if answer.outcome == "failed":
        print(
            f"alertgw: pid {pid} refused the new config and keeps running the old one",
            file=sys.stderr,
        )
    else:
        print(f"alertgw: pid {pid} did not reload", file=sys.stderr)
    return 1


def _other_file(pid: int, daemon_file: str, checked: str) -> str | None:
    """The daemon's config file when it is not `checked`; None when it is (or is unknown)."""
    if not daemon_file:
        return None
    path = Path(daemon_file)
    if not path.is_absolute():  # as the daemon was started, from its working directory
        try:
            path = Path(os.readlink(f"/proc/{pid}/cwd")) / path
        except OSError:
            path = Path.cwd() / path
    try:
        same = path.samefile(checked)
    except OSError:  # one of them is gone (moved since the start): compare the names
        same = os.path.normpath(path) == os.path.abspath(checked)
    return None if same else str(path)


def _await_answer(
    path: Path, pid: int, before: ReloadStatus | None, timeout: float
) -> ReloadStatus | None:
    """Poll for an entry from `pid` newer than `before`; None when none came in time."""
    deadline = time.monotonic() + timeout
    while True:
        entry = read_status(path)
        if (
            entry is not None
            and entry.pid == pid
            and (before is None or before.pid != pid or entry.seq > before.seq)
        ):
            return entry
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _check(config: Config) -> int:
    """Print the summary of a valid config and what deserves a second look."""
    print(summary(config))
    # A gap is a warning, not a refusal: at run time it is loud already (no_staff_on_duty
    # rings the failsafe group), and a home may staff a zone from another on purpose.
    for line in [*roster_gaps(config), *roster_overlaps(config)]:
        print(f"warning: {line}")
    if not Path(config.journal.path).is_absolute():
        print(f"warning: {_relative_journal(config.journal.path)}")
    if config.record is not None and not Path(config.record.path).is_absolute():
        record = config.record.path
        print(
            f"warning: record.path: {record} is relative: from here it is"
            f" {os.path.abspath(record)}, under the shipped systemd unit"
            f" /var/lib/alertgw/{record}"
        )
    if not config.technical.handsets:
        # Not an error (a demo, a home whose technician reads the log), but a paging fault
        # or a bridge gone offline is then heard by nobody on the night it happens.
        print(
            "warning: technical.handsets: none, so technical alarms (a low battery, a sensor"
            " or bridge offline, a link down, a paging fault) ring no handset: they are only"
            " journaled and logged"
        )
    mc = config.mqtt
    if mc is not None and mc.password_env and mc.password_env not in os.environ:
        # Not an error: the daemon's environment (systemd's EnvironmentFile=) is not this
        # shell's. The daemon refuses to connect without it (mqtt_credentials_unreadable).
        print(
            f"warning: mqtt.password_env: {mc.password_env} is not set here; the daemon"
            " needs it in its own environment (systemd: EnvironmentFile=)"
        )
    return 0


async def _history(config: Config, limit: int) -> int:
    # Read-only: an audit tool must not write, migrate or add files to the audit trail.
    journal = await Journal.open_readonly(config.journal.path)
    try:
        alerts = await journal.recent_alerts(limit)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot read the journal: {exc}") from exc
    finally:
        await journal.close()
    tz = ZoneInfo(config.site.timezone)
    unreadable = list(journal.unreadable)
    code = stop_quietly_on_closed_stdout(lambda: _print_history(alerts, tz, unreadable))
    if unreadable:
        # An audit must not look complete when it is not: name what could not be read.
        rows = f"{len(unreadable)} row" + ("s" if len(unreadable) > 1 else "")
        print(f"{config.journal.path}: could not read {rows}:", file=sys.stderr)
        for row in unreadable[:20]:
            print(f"  {row}", file=sys.stderr)
        return code or 1
    return code


def _print_history(alerts: Sequence[StoredAlert], tz: ZoneInfo, unreadable: list[str]) -> int:
    """Print the alerts; times no calendar holds are shown raw and added to `unreadable`."""

    def when(ts: float, what: str) -> str:
        try:
            return _t(ts, tz)
        except (ValueError, OverflowError, OSError):
            unreadable.append(f"{what} at {ts!r}")
            return f"{'?' + repr(ts):<19}"

    if not alerts and not unreadable:
        print("no alerts journaled yet")
    for stored in alerts:
        a = stored.alert
        print(
            f"{when(a.raised_at, f'alert {a.id}')}  {a.id}  {a.priority.name:<8} {a.kind:<12} "
            f"room {a.room:<6} {a.state.value}"
            + (f" by {a.accepted_by}" if a.accepted_by else "")
            + (f"  x{a.count}" if a.count > 1 else "")
        )
        for ts, event, detail in stored.events:
            print(f"    {when(ts, f'alert {a.id}: event {event!r}')}  {event:<10} {detail}")
    return 0


def _t(ts: float, tz: ZoneInfo | None = None) -> str:
    return dt.datetime.fromtimestamp(ts, tz=tz or dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


if __name__ == "__main__":
    sys.exit(main())
