"""Patient data at rest: the data folder holds names, IDs and dates (the SQLite index, reports,
results), so on a shared workstation it and everything in it belong to the user alone: folders
0700, files 0600. What is found looser (an older RadSight, a copy, a umask of 022) is tightened on
start. POSIX modes only; on Windows the user profile's ACLs already do this."""

from __future__ import annotations

import logging
import os
import stat
from collections import Counter
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_POSIX = os.name == "posix"


def private_dir(path: Path) -> Path:
    """Make `path` (0700, parents as the umask says) or tighten it when group or others have access."""
    path = Path(path)
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if _POSIX and mode & 0o077:
        path.chmod(PRIVATE_DIR)
        log.warning("folder %s was open to other users (mode %o): now %o", path, mode, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty and 0600 if missing (so it is never readable by others, not even for the
    moment before a chmod), or tighten it; what is in it is left alone."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        if _POSIX and path.stat().st_mode & 0o077:
            path.chmod(stat.S_IMODE(path.stat().st_mode) & 0o700)
    return path


def repair_tree(root: Path) -> Counter:
    """Take group and other access away from every folder and file under `root` (symlinks are not
    followed); returns how many were tightened per top-level name, for a log line without the
    file names below it (which may carry study identifiers)."""
    repaired: Counter = Counter()
    if not _POSIX or not Path(root).is_dir():
        return repaired
    root = Path(root)

    def tighten(path: Path, keep: int) -> None:
        try:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
                return
            path.chmod(stat.S_IMODE(st.st_mode) & keep)
        except OSError as exc:
            log.warning("cannot tighten the permissions of %s: %s", path, exc.strerror or exc)
            return
        top = path.relative_to(root).parts
        repaired[(top[0] + ("/" if len(top) > 1 or path.is_dir() else "")) if top else "."] += 1

    tighten(root, PRIVATE_DIR)
    for folder, dirs, files in os.walk(root):
        base = Path(folder)
        for name in dirs:
            tighten(base / name, PRIVATE_DIR)
        for name in files:
            tighten(base / name, 0o700)  # owner bits kept (an executable stays one), group and other cleared
    return repaired


def repair_data_dir(root: Path) -> Counter:
    """repair_tree on the data folder. Logged as information, not a warning: inside a 0700 folder
    (private_dir warns when it was not) a 0644 file is out of other users' reach, and files that
    RadSight itself wrote under a umask of 022 since the last start are expected here."""
    repaired = repair_tree(root)
    if repaired:
        where = ", ".join(f"{name} {count}" for name, count in sorted(repaired.items()))
        log.info("data folder %s: removed other users' access from %d items (%s)", root, sum(repaired.values()), where)
    return repaired
