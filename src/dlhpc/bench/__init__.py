"""bench layer."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from dlhpc.errors import ConfigError

# How long a child may take to stop after the benchmark itself is stopped: a launcher stops its
# ranks and a training run stops at its next step boundary, both before the scratch directory
# they write into is removed.
CHILD_GRACE_S = 30.0


def peer_env() -> dict[str, str]:
    """The environment a peer (Keras, a plain PyTorch loop, fastText) runs in: the user's, without
    what the dlhpc CLI set for itself (``DLHPC_DEFAULTED``, e.g. GOMP_SPINCOUNT)."""
    ours = set(filter(None, os.environ.get("DLHPC_DEFAULTED", "").split(",")))
    return {k: v for k, v in os.environ.items() if k not in ours | {"DLHPC_DEFAULTED"}}


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # as the default action's status, after the finally blocks


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory for a benchmark's runs, removed however the benchmark ends.

    Unlike ``tempfile.TemporaryDirectory``, removing it never raises (a child still closing a
    file there would turn the run's own error into an ``OSError`` and leave the directory), and
    SIGTERM (``timeout``, a batch system's time limit) unwinds through the removal instead of
    ending the process on the spot; a handler someone else installed stays as it is."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    ours = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    )
    if ours:
        signal.signal(signal.SIGTERM, _terminated)
    try:
        yield path
    finally:
        try:
            for _ in range(3):  # again if a child still stopping wrote a file meanwhile
                shutil.rmtree(path, ignore_errors=True)
                if not path.exists():
                    break
        finally:
            if ours:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_child(
    cmd: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(cmd, capture_output=True, text=True)``, except that a child is never
    killed at once when the benchmark is stopped (Ctrl-C, SIGTERM): it is asked to stop and
    given ``CHILD_GRACE_S`` to do so. Killed outright, torch's elastic launcher would leave its
    ranks (their own sessions) running, writing into a directory that is being removed."""
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            stdout, stderr = proc.communicate()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=CHILD_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def last_error_line(stderr: str, returncode: int) -> str:
    """The one line that says why a child failed: its last ``…: error: …`` line (a rank's own,
    among a launcher's log), else its last line (a traceback's exception), else its status."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    if errors:
        return errors[-1]
    return lines[-1] if lines else f"exit status {returncode} and no message"


def check_python(python: str) -> str:
    """``--peers-python``: an interpreter that starts, checked before the benchmark does (found
    missing later, it costs the runs before it and ends the benchmark in a traceback). Returns
    the command to run (``~`` expanded, as a shell would have)."""
    given = str(Path(python).expanduser()) if os.sep in python else python
    where = shutil.which(given)
    if where is None:
        path = Path(given)
        if os.sep not in given:
            raise ConfigError(f"--peers-python {python}: not found on PATH")
        if not path.exists():
            raise ConfigError(f"--peers-python {python}: no such file")
        if path.is_dir():
            raise ConfigError(f"--peers-python {python}: is a directory, not a Python interpreter")
        raise ConfigError(f"--peers-python {python}: not executable")
    try:
        probe = subprocess.run(
            [where, "-c", "import sys; print(sys.version_info[0])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError as e:
        raise ConfigError(f"--peers-python {python}: does not start ({e.strerror or e})") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"--peers-python {python}: did not start within 60 s") from None
    if probe.returncode != 0:
        why = last_error_line(probe.stderr, probe.returncode)
        raise ConfigError(f"--peers-python {python}: does not run Python code ({why})")
    if probe.stdout.strip() != "3":
        raise ConfigError(f"--peers-python {python}: not a Python 3 interpreter")
    return given
