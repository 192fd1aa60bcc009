"""Hangar's log guard: a full disk under an environment's logs never fails its tasks.

Airflow writes task logs, and its components their console output, through structlog's
``BytesLogger`` and ``WriteLogger``. A write that fails for want of room (``ENOSPC``, or a disk
quota reached: ``EDQUOT``) raises out of them; in a task's supervisor that ends the loop that
carries the task's log lines, and the task is lost though its code was fine. Hangar installs
this module into every Python runtime it builds and loads it when the interpreter starts
(``hangar_log_guard.pth``). Once structlog is imported, those two loggers drop a line they
cannot write instead of raising, and count it for its file. The first line that reaches that
file again is followed by a warning: how many lines (and bytes) were not written, between which
times. A line that only reached the file's buffer is not counted: it is written with a later
flush. Every other error is raised as before.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import importlib.abc
import importlib.machinery
import json
import sys
import threading
import weakref

__all__ = ["guard"]

#: The errors of a write that found no room.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})
#: The names structlog gives a logger's one write method.
_METHODS = (
    "msg",
    "log",
    "debug",
    "info",
    "warn",
    "warning",
    "fatal",
    "failure",
    "err",
    "error",
    "critical",
    "exception",
)


class _Dropped:
    __slots__ = ("lines", "bytes", "first", "last", "error")

    def __init__(self, error: OSError):
        self.lines = 0
        self.bytes = 0
        self.first = _now()
        self.last = self.first
        self.error = f"[Errno {error.errno}] {error.strerror}"


#: What could not be written, by file; forgotten with the file.
_dropped: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_dropped_lock = threading.Lock()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def _note(d: _Dropped) -> str:
    return (
        f"hangar: {d.lines} log line(s) ({d.bytes} bytes) could not be written "
        f"from {d.first} to {d.last} and are missing: the disk was full ({d.error})"
    )


def _line(message, d: _Dropped):
    """The warning in the form of the file's own lines: JSON if they are, text if not."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    if text.lstrip().startswith("{"):
        out = json.dumps(
            {"timestamp": _now(), "level": "warning", "logger": "hangar", "event": _note(d)}
        )
    else:
        out = f"{_now()} [warning  ] {_note(d)} [hangar]"
    return out.encode() if isinstance(message, bytes) else out


def _count(file, size: int, error: OSError) -> None:
    with _dropped_lock:
        d = _dropped.get(file)
        if d is None:
            d = _dropped[file] = _Dropped(error)
        d.lines += 1
        d.bytes += size
        d.last = _now()


def _guarded(self, message) -> None:
    """structlog's write of one line, with a line that finds no room dropped and counted.

    A text file's line goes to its byte buffer directly (what text was pending goes first), so
    a failed write always means the line was refused and a failed flush always means it waits
    in the buffer.
    """
    lock = getattr(self, "_lock", None) or contextlib.nullcontext()
    file = self._file
    with lock:
        text = isinstance(message, str)
        if text and hasattr(file, "buffer") and hasattr(file, "encoding"):
            try:
                file.flush()
            except OSError as e:
                if e.errno not in NO_ROOM:
                    raise
            encoding, errors = file.encoding or "utf-8", file.errors or "strict"
            encode = lambda line: line.encode(encoding, errors) + b"\n"  # noqa: E731
            write, flush = file.buffer.write, file.buffer.flush
        else:
            newline = "\n" if text else b"\n"
            encode = lambda line: line + newline  # noqa: E731
            write, flush = self._write, self._flush
        data = encode(message)
        try:
            write(data)
        except OSError as e:
            if e.errno not in NO_ROOM:
                raise
            _count(file, len(data), e)
            return
        try:
            flush()
        except OSError as e:
            if e.errno not in NO_ROOM:
                raise
            # Kept in the file's buffer, written with a later flush.
            return
        with _dropped_lock:
            d = _dropped.pop(file, None)
        if d is None:
            return
        try:
            write(encode(_line(message, d)))
            flush()
        except OSError as e:
            if e.errno not in NO_ROOM:
                raise
            with _dropped_lock:
                _dropped.setdefault(file, d)


def guard(module) -> None:
    """Guards ``BytesLogger`` and ``WriteLogger`` of ``structlog._output``; a structlog whose
    loggers are not as expected is left as it is."""
    for name in ("BytesLogger", "WriteLogger"):
        cls = getattr(module, name, None)
        original = getattr(cls, "msg", None)
        init = getattr(getattr(cls, "__init__", None), "__code__", None)
        if original is None or init is None:
            continue
        if not {"_file", "_write", "_flush"} <= set(init.co_names):
            continue
        for method in _METHODS:
            if getattr(cls, method, None) is original:
                setattr(cls, method, _guarded)


class _GuardOnImport(importlib.abc.MetaPathFinder):
    """Guards structlog's loggers as soon as their module is imported, so an interpreter that
    never logs through structlog never imports it."""

    def find_spec(self, name, path, target=None):
        if name != "structlog._output":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_guard(module):
            exec_module(module)
            guard(module)

        spec.loader.exec_module = exec_and_guard
        return spec


def _install() -> None:
    loaded = sys.modules.get("structlog._output")
    if loaded is not None:
        guard(loaded)
    elif not any(isinstance(f, _GuardOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _GuardOnImport())


_install()
