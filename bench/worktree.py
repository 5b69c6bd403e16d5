"""Another git revision of the service, for ``--against REV``: a detached worktree of this
repository in a folder of the bench's, whose Procfile lines then run with it as their
working directory (and this venv). Removed again at the end, git's bookkeeping included.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench.procs import ROOT

GIT_TIMEOUT_SECONDS = 120


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


def short_name(revision: str) -> str:
    """The revision's abbreviated commit id; fails when it names no commit."""
    return _git("rev-parse", "--short", "--verify", f"{revision}^{{commit}}")


def add(path: Path, revision: str) -> None:
    """Check ``revision`` out, detached, into ``path`` (an empty or missing folder)."""
    _git("worktree", "add", "--detach", str(path), revision)


def remove(path: Path) -> None:
    """The worktree at ``path`` and git's record of it, whatever state ``add`` left."""
    try:
        # Twice --force: also when it has changes (bytecode is ignored, logs are not) or
        # an interrupted ``add`` left it locked.
        _git("worktree", "remove", "--force", "--force", str(path))
    finally:
        shutil.rmtree(path, ignore_errors=True)
        _git("worktree", "prune")
