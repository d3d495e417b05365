"""Run the ``segkit`` command line inside the test process, as the console script does, with its output captured.

A subprocess spends seconds importing torch and MONAI before it does anything; the tests that exercise a real
``python -m segkit`` process (start-up warnings, exit codes, signals) keep using one. Everything else calls
``segkit.cli.main`` here, in the given working directory, with a wide console so tables do not wrap.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from unittest import mock

from rich.console import Console

from segkit import cli


@dataclass(frozen=True)
class Completed:
    """What ``subprocess.run`` would report: the exit code and the captured output."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path, width: int = 250) -> Completed:
    """``segkit ARGS`` run in ``cwd`` by ``segkit.cli.main``; its exit code, stdout and stderr."""
    out, err = StringIO(), StringIO()
    previous = Path.cwd()
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(cli, "console", Console(file=out, width=width)))
        stack.enter_context(mock.patch.object(cli, "err_console", Console(file=err, width=width)))
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        os.chdir(cwd)
        try:
            code = cli.main([str(a) for a in args])
        finally:
            os.chdir(previous)
    return Completed(code, out.getvalue(), err.getvalue())
