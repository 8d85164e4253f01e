"""Advisory whole-file locks that the operating system drops when the holder dies.

POSIX uses `fcntl.flock`; Windows uses `msvcrt.locking` on one byte far past the end of
the file, so the holder's note at the start of the file stays readable while locked
(Windows byte-range locks are mandatory). Each platform module is imported where it is
used, never at import time, so every module of the product imports on either system.
Windows has no shared lock through `msvcrt`: a shared probe takes the exclusive lock and
gives it back.
"""

from __future__ import annotations

import errno
import os

_WINDOWS = os.name == "nt"
_FAR_BYTE = 0x7FFFFFF0  # the byte Windows locks: past any lock file's text
_BUSY = {errno.EACCES, errno.EAGAIN, errno.EDEADLK, errno.EWOULDBLOCK}


def try_lock(fd: int, *, shared: bool = False) -> bool:
    """Lock the open file `fd` without waiting; False when another process holds it."""
    if _WINDOWS:
        import msvcrt

        os.lseek(fd, _FAR_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError as exc:
            if exc.errno in _BUSY:
                return False
            raise
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True
    import fcntl

    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def unlock(fd: int) -> None:
    """Give back a lock taken by `try_lock` (closing `fd` does it too)."""
    if _WINDOWS:
        import msvcrt

        os.lseek(fd, _FAR_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def read_note(fd: int, limit: int = 4096) -> bytes:
    """The first `limit` bytes of the file (the holder's note)."""
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, limit)


def write_note(fd: int, data: bytes) -> None:
    """Replace the file's content by `data`, durably."""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    os.fsync(fd)
