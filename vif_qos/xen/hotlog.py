"""Logging for the hotplug commands, the way Xen's own hotplug scripts log.

Xen's scripts (``tools/hotplug/Linux/logging.sh``, ``xen-hotplug-common.sh``) send
each message to syslog with ``logger -p daemon.LEVEL`` and append their stderr to
``/var/log/xen/xen-hotplug.log``. vif-qos does the same:

- syslog, facility ``daemon``, tag ``vif-qos`` (with the pid);
- one line per message appended to ``/var/log/xen/xen-hotplug.log``, unless our
  stderr already *is* that file (as when vif-bridge's hook runs us: vif-bridge
  redirected its stderr there) -- then to stderr, so nothing is written twice. When
  ``/var/log/xen`` does not exist (Xen's init scripts make it at boot) the line goes
  to stderr; vif-qos never creates the directory.

``debug`` messages are dropped unless debugging is on: ``debug = true`` in the
policy file's ``[host]`` section, or ``VIF_QOS_DEBUG=1`` in the environment.

For tests and for ``vif-qos simulate``: ``VIF_QOS_HOTPLUG_LOG=PATH`` appends to
PATH instead of ``/var/log/xen/xen-hotplug.log`` (empty: stderr only), and
``VIF_QOS_SYSLOG=0`` turns syslog off.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator, Optional, TextIO

#: Where Xen's hotplug scripts append their stderr (XEN_LOG_DIR in hotplugpath.sh).
XEN_HOTPLUG_LOG = "/var/log/xen/xen-hotplug.log"
SYSLOG_TAG = "vif-qos"

_LEVELS = {"debug": 7, "info": 6, "notice": 5, "warning": 4, "err": 3}


def syslog_text(line: str) -> str:
    """``line`` as text ``syslog.syslog`` takes: bytes that were not UTF-8 (kept as
    surrogate escapes from a file name, xenstore or argv: ``syslog.syslog`` raised
    UnicodeEncodeError on them) written as ``\\xe9``, NUL as ``\\x00``."""
    raw = line.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace").replace("\0", "\\x00")


class HotplugLog:
    """Log lines for one hotplug run.

    :param context: prefix of every line, e.g. ``"online vif3.0"``.
    :param debug: also emit ``debug`` lines.
    :param log_path: the file to append to; default ``VIF_QOS_HOTPLUG_LOG`` or
        :data:`XEN_HOTPLUG_LOG`; ``""`` for stderr only.
    :param use_syslog: default: on unless ``VIF_QOS_SYSLOG=0``.
    :param stderr: the stream used when the file is not (default ``sys.stderr``).
    """

    def __init__(self, context: str = "", debug: bool = False,
                 log_path: Optional[str] = None, use_syslog: Optional[bool] = None,
                 stderr: Optional[TextIO] = None):
        self.context = context
        self.debug_on = debug or os.environ.get("VIF_QOS_DEBUG", "") not in ("", "0")
        if log_path is None:
            log_path = os.environ.get("VIF_QOS_HOTPLUG_LOG", XEN_HOTPLUG_LOG)
        self.log_path = log_path
        if use_syslog is None:
            use_syslog = os.environ.get("VIF_QOS_SYSLOG", "1") != "0"
        self.use_syslog = use_syslog
        self.stderr = stderr if stderr is not None else sys.stderr
        self._syslog = None
        self._file_is_stderr = self._same_as_stderr()

    def _same_as_stderr(self) -> bool:
        if not self.log_path:
            return True
        try:
            a = os.fstat(self.stderr.fileno())
            b = os.stat(self.log_path)
        except (OSError, ValueError, AttributeError):
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def set_debug(self, debug: bool) -> None:
        """Turn debug lines on (the policy file's ``debug``); the environment wins."""
        self.debug_on = debug or os.environ.get("VIF_QOS_DEBUG", "") not in ("", "0")

    def log(self, level: str, message: str) -> None:
        """Emit one line at ``level`` (``debug``, ``info``, ``notice``, ``warning``, ``err``)."""
        if level == "debug" and not self.debug_on:
            return
        text = " ".join(str(message).split())
        line = f"{self.context}: {text}" if self.context else text
        self._to_syslog(level, line)
        self._to_file(level, line)

    def debug(self, message: str) -> None:
        self.log("debug", message)

    def info(self, message: str) -> None:
        self.log("info", message)

    def warning(self, message: str) -> None:
        self.log("warning", message)

    def error(self, message: str) -> None:
        self.log("err", message)

    def _to_syslog(self, level: str, line: str) -> None:
        if not self.use_syslog:
            return
        try:
            import syslog
            if self._syslog is None:
                syslog.openlog(SYSLOG_TAG, syslog.LOG_PID, syslog.LOG_DAEMON)
                self._syslog = syslog
            syslog.syslog(syslog.LOG_DAEMON | _LEVELS.get(level, 6), syslog_text(line))
        except (ImportError, OSError, ValueError):  # pragma: no cover - no syslog at all
            self.use_syslog = False

    def _to_file(self, level: str, line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        text = f"{stamp} {SYSLOG_TAG}[{os.getpid()}] {level}: {line}\n"
        if not self._file_is_stderr:
            try:
                fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            except OSError:
                pass  # no /var/log/xen (Xen not started): stderr below
            else:
                try:
                    os.write(fd, syslog_text(text).encode("utf-8"))
                finally:
                    os.close(fd)
                return
        try:
            self.stderr.write(syslog_text(text))
            self.stderr.flush()
        except (OSError, ValueError):
            pass


class _LibraryLog(logging.Handler):
    """Sends the library's log records (logger ``vif_qos``: :mod:`vif_qos.kernel.apply`
    says so when it replaces a foreign qdisc on the vif or a stale entry of an
    earlier guest) to a run's :class:`HotplugLog`, so they reach syslog and the
    hotplug log like the run's own lines."""

    def __init__(self, log: HotplugLog):
        super().__init__(logging.DEBUG)
        self.hotplug_log = log

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            level = "err"
        elif record.levelno >= logging.WARNING:
            level = "warning"
        elif record.levelno >= logging.INFO:
            level = "info"
        else:
            level = "debug"
        message = record.getMessage()
        if message.startswith("vif-qos: "):
            message = message[len("vif-qos: "):]
        self.hotplug_log.log(level, message)


@contextmanager
def library_log_to(log: HotplugLog) -> Iterator[None]:
    """Route the ``vif_qos`` logger to ``log`` for the block (used by hotplug runs
    and ``vif-qos cleanup``)."""
    logger = logging.getLogger("vif_qos")
    handler = _LibraryLog(log)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

