"""The one family of errors vif-qos raises.

Every error carries the bad token and where it came from, so that the one line
printed (stderr, syslog, xenstore ``hotplug-error``) tells the admin what to fix.
Two places turn these into exit statuses and messages, and library code never
calls ``sys.exit``: the front door (:mod:`vif_qos.cli`) for the admin's commands
(stderr), and :func:`vif_qos.xen.hotplug.hotplug_main` for Xen's hotplug commands
(the hotplug log, syslog and xenstore ``hotplug-error``; ``offline``/``remove``
and a policy's ``on_failure = warn`` exit 0).

Exit statuses used by the command line:

- 2: bad input (:class:`InputError` and subclasses): a malformed value, an
  unknown key or pool, a policy file that does not validate.
- 1: anything the kernel, xenstore or the environment refused
  (:class:`KernelError`, :class:`XenstoreError`, :class:`EnvironmentProblem`).
"""

from __future__ import annotations

from typing import Optional


class VifQosError(Exception):
    """Base class. ``str(err)`` is the one-line message for the admin.

    :param message: what is wrong, in words.
    :param token: the offending token exactly as written (quoted in the message).
    :param source: where the token came from: ``"/etc/xen/vif-qos.conf:12"``,
        ``"xenstore:backend/vif/3/0/rate"``, ``"--qos"``, ...
    """

    exit_status = 1

    def __init__(self, message: str, token: Optional[str] = None,
                 source: Optional[str] = None):
        self.message = message
        self.token = token
        self.source = source
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = self.message
        if self.token is not None:
            text = f"{text}: {shown_token(self.token)}"
        if self.source:
            text = f"{self.source}: {text}"
        # One line, always: newlines from a kernel message or a file are folded.
        return " ".join(text.split())


def one_line(err: BaseException) -> str:
    """The one line an admin reads for any exception: a :class:`VifQosError`'s own
    (:meth:`VifQosError.one_line`); anything else is a bug, ``internal error: TYPE:
    message`` with the message folded onto one line."""
    if isinstance(err, VifQosError):
        return err.one_line()
    return "internal error: " + " ".join(f"{type(err).__name__}: {err}".split())


#: Longest token quoted whole in a message, characters; a longer one is shown by
#: its start and end and its length (a 5000-digit number is still recognisable).
TOKEN_SHOWN_CHARS = 80


def shown_token(token: str) -> str:
    """``repr(token)``, or for a long token its first and last characters around
    ``...`` with the length: ``'1111...1111' (5000 characters)``."""
    if len(token) <= TOKEN_SHOWN_CHARS:
        return repr(token)
    half = TOKEN_SHOWN_CHARS // 2 - 4
    return f"{token[:half] + '...' + token[-half:]!r} ({len(token)} characters)"


class InputError(VifQosError):
    """Bad input from the admin or from xenstore (exit status 2)."""

    exit_status = 2


class ConfigError(InputError):
    """The policy file or a domain config file is wrong (exit status 2)."""


class AdmissionRefused(InputError):
    """A guaranteed rate that does not fit under its parent class while the
    policy's ``[host] admission = refuse`` (exit status 2; nothing applied)."""


class KernelError(VifQosError):
    """The kernel refused a netlink or nftables request; names the object.

    :param errno: the kernel's errno (positive, as in :mod:`errno`) when the
        refusal came with one (a netlink error), else None (an nftables
        transaction, or a check of ours before anything was sent).
    """

    errno: Optional[int] = None

    def __init__(self, message: str, token: Optional[str] = None,
                 source: Optional[str] = None, errno: Optional[int] = None):
        self.errno = errno
        super().__init__(message, token, source)


class XenstoreError(VifQosError):
    """xenstored could not be reached, or a read/write failed."""


class EnvironmentProblem(VifQosError):
    """Something the host lacks: not root, a missing kernel feature or tool."""
