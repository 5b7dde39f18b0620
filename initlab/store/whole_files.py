"""Files written whole or not at all, whatever happens to the process writing them.

`write(path, fill)`: `fill(f)` writes into a binary file that has no name yet (O_TMPFILE), which
is then linked in under `path`. A reader sees the old file or the whole new one; a fill that
fails (a full disk) or a process killed mid-write (kill -9, the OOM killer) leaves neither half a
file nor a temporary, because a nameless file vanishes with the process. Where a file cannot be
nameless (no O_TMPFILE: macOS, some network file systems; no /proc), it is written under a
temporary name, `.<name>.tmp<pid>`, and renamed; a kill leaves that temporary, for the writer's
next attempt to remove with `remove_leftovers(path)` (records.clear_run, data's cache).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO, Callable

# A nameless file is named by linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd/N (open(2), O_TMPFILE).
_NAMELESS_FILES = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


def write(path: Path, fill: Callable[[BinaryIO], None]) -> None:
    """Write `path` whole or not at all: `fill(f)` writes the content into the binary file f."""
    if not _NAMELESS_FILES:
        return _write_then_rename(path, fill)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o666, dir_fd=directory)  # the mode less the umask
        except OSError:  # a file system without O_TMPFILE
            return _write_then_rename(path, fill)
        with open(fd, "wb") as f:
            fill(f)
            f.flush()
            try:
                _name(fd, directory, path.name)
                return
            except OSError as error:
                if error.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise
                # a file system that makes nameless files but cannot name them (linkat refused): by name
    finally:
        os.close(directory)
    _write_then_rename(path, fill)


def _name(fd: int, directory: int, name: str) -> None:
    """Give the nameless file `fd` the name `name` in `directory`, replacing a file of that name.
    (A dst_dir_fd makes os.link call linkat with AT_SYMLINK_FOLLOW; its plain link() would try to
    link /proc's symlink itself.)"""
    try:
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=directory, follow_symlinks=True)
        return
    except FileExistsError:  # linkat never replaces: link under a temporary name, rename that over it
        pass
    temporary = f".{name}.tmp{os.getpid()}"
    try:
        os.unlink(temporary, dir_fd=directory)  # a killed process's, whose pid this one has now
    except FileNotFoundError:
        pass
    os.link(f"/proc/self/fd/{fd}", temporary, dst_dir_fd=directory, follow_symlinks=True)
    try:
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        os.unlink(temporary, dir_fd=directory)
        raise


def remove_leftovers(path: Path) -> None:
    """Remove the temporaries that writes of `path` killed mid-way left where files cannot be
    nameless. Call it where no other process writes `path` (under the writer's lock)."""
    for temporary in path.parent.glob(f".{path.name}.tmp*"):
        temporary.unlink(missing_ok=True)


def _write_then_rename(path: Path, fill: Callable[[BinaryIO], None]) -> None:
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(temporary, "wb") as f:
            fill(f)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
