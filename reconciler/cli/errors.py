"""The CLI's one error boundary: whatever a command lets out becomes an exit code and one line on stderr.

Exit codes, for scripts (README "The CLI"): 0 done; 1 refused or failed (an invalid repository, an unknown
plugin, an unreachable remote, nothing to approve, a file that cannot be read or written); 2 a usage error; 130
interrupted. Never a traceback: `GRAYOPS_DEBUG=1` prints it too, and an unexpected error's traceback is also
logged at debug level. Commands raise `Failed` (or `UsageError`) with the line to say, or let the errors of the
layers below through; they catch an error only to act on it (try again, go on without), not to print it.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable

from reconciler.adapters.forge import ForgeError
from reconciler.adapters.gitrepo import GitError, WorkdirBusy
from reconciler.commands import CommandRefused
from reconciler.core.fleet import FleetInvalid
from reconciler.core.status import StatusUnreadable

log = logging.getLogger("grayops")

DONE, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130


class Failed(Exception):
    """The command refused or failed; the message is what to say (exit 1). It may hold a list under its line."""

    code = FAILED


class UsageError(Failed):
    """The command was asked for something it cannot be asked (a malformed option value): exit 2."""

    code = USAGE


# Errors of our own that say what went wrong themselves: their text is the line.
OWN_ERRORS: tuple[type[Exception], ...] = (GitError, WorkdirBusy, CommandRefused, StatusUnreadable, ForgeError)
# Errors that are no bug of grayops': said without "unexpected", and with no traceback in the debug log.
EXPECTED: tuple[type[BaseException], ...] = (Failed, KeyboardInterrupt, FleetInvalid, OSError, *OWN_ERRORS)


def say(message: str) -> None:
    """One line on stderr, as every grayops error is said."""
    print(f"grayops: {message}", file=sys.stderr)


def exit_code(err: BaseException) -> int:
    if isinstance(err, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(err, Failed):
        return err.code
    return FAILED


def describe(err: BaseException) -> str:
    """What to print for `err`: `grayops: ...` in one line, or a fleet's errors one per line as validate gives them."""
    if isinstance(err, KeyboardInterrupt):
        return "grayops: interrupted"
    if isinstance(err, FleetInvalid):
        return str(err)  # one line per problem, `path:line: field: message`, as `grayops validate` says them
    if isinstance(err, Failed):
        return f"grayops: {err}"  # composed by the command: any list under its line is meant
    if isinstance(err, OWN_ERRORS):
        return f"grayops: {_flat(str(err)) or type(err).__name__}"
    if isinstance(err, OSError):
        return f"grayops: {_os_error(err)}"
    return f"grayops: unexpected {type(err).__name__}: {_flat(str(err))} (GRAYOPS_DEBUG=1 shows where)"


def guarded(command: Callable[[], int]) -> int:
    """Run `command` inside the boundary: its exit code, or the one for what it raised (said on stderr)."""
    try:
        return command()
    except (Exception, KeyboardInterrupt) as err:  # SystemExit (argparse, --help) passes through
        if os.environ.get("GRAYOPS_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        elif not isinstance(err, EXPECTED):
            log.debug("unexpected error", exc_info=err)  # shown with --log-level debug
        print(describe(err), file=sys.stderr)
        return exit_code(err)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _os_error(err: OSError) -> str:
    """`/var/lib/grayops: permission denied` rather than `[Errno 13] Permission denied: '/var/lib/grayops'`."""
    if err.strerror is None:
        return _flat(str(err)) or type(err).__name__
    reason = err.strerror[:1].lower() + err.strerror[1:]
    return f"{err.filename}: {reason}" if err.filename is not None else reason
