"""The `harness` command: one module per subcommand, each adding its own parser; errors become exit codes.

Exit codes: 0 ok; 1 a failed check (budget, regression, unfaithful export); 2 bad input (one line);
3 an internal error (a bug: one line, the traceback with --debug); 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM: how CI cancels a job), 129 hung up (SIGHUP): the three are handled alike.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading

from harness import __version__
from harness.cli import (bench, bisect, compare, export, history, models, profile, quantize, reduce, report, serve, targets,
                         train, tune)
from harness.errors import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, HarnessError, Interrupted,
                            ParityError)

COMMANDS = (bench, export, quantize, serve, profile, train, reduce, report, compare, history, bisect, tune, models, targets)
INTERRUPT_GRACE_S = 15.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Export, quantize and benchmark vision models on edge targets.")
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _on_interrupt(stop: dict, signum, frame) -> None:
    """Ctrl-C, SIGTERM and SIGHUP unwind normally (children ended, staging folders removed, the record untouched);
    if unwinding hangs (a lock held mid-interrupt), leave anyway after a grace period.

    Leaving hard is safe: results CSVs are only ever replaced by rename, and measuring children die
    with their parent (PR_SET_PDEATHSIG).
    """
    stop.setdefault("signum", signum)

    def leave() -> None:
        print(f"{stopped_by(signum)}: results on disk are unchanged (stopped hard: clean-up hung)", file=sys.stderr)
        os._exit(128 + signum)

    timer = threading.Timer(INTERRUPT_GRACE_S, leave)
    timer.daemon = True
    timer.start()
    stop.setdefault("timers", []).append(timer)
    raise KeyboardInterrupt


def stopped_by(signum: int) -> str:
    return {signal.SIGTERM: "terminated (SIGTERM)", signal.SIGHUP: "hung up (SIGHUP)"}.get(signum, "interrupted")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    stop: dict = {}  # which signal stopped the run, and the hard-stop timers it started
    previous = {s: signal.signal(s, functools.partial(_on_interrupt, stop)) for s in STOP_SIGNALS} if in_main_thread else {}
    try:
        return _run(args, stop)
    finally:
        for timer in stop.get("timers", []):  # unwinding finished: no hard stop needed
            timer.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(args, stop: dict | None = None) -> int:
    args.stop = stop if stop is not None else {}  # a command that reports what it had (tune) says which signal came
    try:
        return args.run(args)
    except ParityError as e:  # the export ran but is not faithful: a failed check, not bad input
        return _fail(args, f"error: {e}", EXIT_FAILED)
    except HarnessError as e:
        return _fail(args, f"error: {e}", EXIT_BAD_INPUT)
    except OSError as e:
        from harness.files import disk_error

        where = e.filename or "a file of this run (scratch space is under TMPDIR)"
        trouble = disk_error(e, where, "free space or permissions there, or point TMPDIR, HARNESS_CACHE_DIR or "
                                       "--results-dir elsewhere")
        if isinstance(trouble, HarnessError):
            return _fail(args, f"error: {trouble}", EXIT_BAD_INPUT)
        return _internal(args, e)
    except KeyboardInterrupt as e:
        said = str(e) if isinstance(e, Interrupted) else "interrupted: results on disk are unchanged"
        signum = (stop or {}).get("signum", signal.SIGINT)
        print(stopped_by(signum) + said.removeprefix("interrupted"), file=sys.stderr)
        return EXIT_INTERRUPTED if signum == signal.SIGINT else 128 + signum
    except Exception as e:  # a bug: say so in one line, not as if the user's input or the gate had failed
        return _internal(args, e)


def _internal(args, e: BaseException) -> int:
    first_line = str(e).splitlines()[0] if str(e) else ""
    return _fail(args, f"internal error: {type(e).__name__}: {first_line} (a bug in harness {__version__}: "
                       f"rerun with --debug for the traceback and report it)", EXIT_INTERNAL)


def _fail(args, message: str, code: int) -> int:
    if args.debug:
        raise
    print(message, file=sys.stderr)
    return code
