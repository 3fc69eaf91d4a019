"""Who is at fault when a library call fails: the file we read, the file we write, or neither.

A video is "broken" only when it was read and found bad. A read that fails (no permission, an
I/O error, a stale network handle, a timeout, a file gone) says nothing about the video, and a
failed write of our output says nothing about the input, however a library wraps the system's
``OSError``: PyAV's write callback stashes it and, when the trailer write fails next, raises a
``PyAVCallbackError`` with the ``OSError`` only as its context. No library is imported here.
"""

from __future__ import annotations

import errno
import os

# errno values that say a file could not be read, never that its content is bad: permissions,
# failing devices, network file systems, vanished files, process limits; and a full disk or
# quota under the temp file that keeps decord's log (``_decord_log_dropped``).
READ_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EIO,
        errno.ENXIO,
        errno.ESTALE,
        errno.ETIMEDOUT,
        errno.ENOTCONN,
        errno.ECONNRESET,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EMFILE,
        errno.ENFILE,
        errno.EAGAIN,
        errno.EINTR,
        errno.EBUSY,
        errno.ENOSPC,
        errno.EDQUOT,
    }
)


def os_error_inside(exc: BaseException) -> OSError | None:
    """The first ``OSError`` in ``exc`` or the exceptions it was raised from or during, as a
    traceback shows them (``__cause__``, else ``__context__`` unless suppressed).

    Libraries wrap the system's errors: PyAV's write callback stashes the ``OSError`` of a full
    disk and, when the trailer write fails next, raises a ``PyAVCallbackError`` with the
    ``OSError`` only as its context. PyAV's own ``av.error`` classes for errno codes (e.g.
    ``av.error.PermissionError``) are ``OSError`` subclasses and count.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return None


def read_failed(exc: BaseException) -> bool:
    """Whether ``exc`` (raised while reading a file) says the file could not be read, as opposed
    to read and found bad: an ``OSError`` with a :data:`READ_ERRNOS` code, however wrapped."""
    inner = os_error_inside(exc)
    return inner is not None and inner.errno in READ_ERRNOS


def write_failure(exc: BaseException, names: tuple[str, ...]) -> OSError | None:
    """The ``OSError`` behind a failed write of a file called one of ``names`` (the output and
    its temp file), or None when ``exc`` is not about writing it: the first ``OSError`` in the
    chain, else, for a library error that names the file (PyAV's ``FFmpegError.filename``) but
    carries no ``OSError``, an ``EIO`` saying so."""
    cause = os_error_inside(exc)
    name = getattr(exc, "filename", None)
    if cause is None and isinstance(name, str) and os.path.basename(name) in names:
        cause = OSError(errno.EIO, f"PyAV could not write it ({type(exc).__name__})")
    return cause
