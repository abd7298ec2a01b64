"""The xenstore adapter: runs Xen's own ``xenstore-*`` tools, nothing else.

The hotplug path reads and writes xenstore through the same tools Xen's scripts
use (Debian package xenstore-utils), so it finds xenstored exactly as they do:
libxenstore reads ``XENSTORED_PATH`` (default ``/var/run/xenstored/socket``, then
the xenbus device), which is passed through from our environment unchanged.

Each call has a timeout (libxl kills a hotplug script after 40 s, so ours must be
well below). Failures are told apart, because the hotplug side treats them
differently:

- :class:`XenstoreMissing`: the daemon answered, the node is not there (the tool
  said ``couldn't read path P`` / ``could not list path P``).
- :class:`XenstoreUnreachable`: the tool could not connect (``xs_open: ...``).
- :class:`XenstoreTimeout`: the tool did not finish within the timeout.
- :class:`XenstoreError` itself: any other failure of the tool.

Values are read in the tools' escaped form (one line per value: ``\\n``, ``\\t``,
``\\\\``, ``\\xNN`` for bytes >= 0x80, as in ``tools/xenstore/xs_lib.c:
expanding_buffer_ensure/sanitise_value``) and unescaped here; values are written
with ``-R`` (raw), so a backslash in a message is stored as written.
"""

from __future__ import annotations

import codecs
import os
import re
import subprocess
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from vif_qos.errors import EnvironmentProblem, XenstoreError

#: Default timeout for one tool run, in seconds (libxl's script timeout is 40 s).
DEFAULT_TIMEOUT_S = 10.0
_LS_LINE = re.compile(r'(/[^ ]*) = "(.*)"\Z')


class XenstoreMissing(XenstoreError):
    """The node does not exist (or dom0 may not read it)."""


class XenstoreUnreachable(XenstoreError):
    """xenstored could not be reached: not running, or ``XENSTORED_PATH`` is wrong."""


class XenstoreTimeout(XenstoreError):
    """A xenstore tool did not finish within the timeout."""


def unescape(text: str) -> str:
    """Undo the xenstore tools' output escaping (``\\n``, ``\\\\``, ``\\xNN``, octal).

    Bytes that are not UTF-8 are kept as surrogate escapes.
    """
    if "\\" not in text:
        return text
    raw = codecs.escape_decode(text.encode("latin-1", errors="backslashreplace"))[0]
    return raw.decode("utf-8", errors="surrogateescape")


def parse_ls(text: str) -> Dict[str, str]:
    """``xenstore-ls -f`` output -> absolute path: value (unescaped)."""
    out: Dict[str, str] = {}
    for line in text.splitlines():
        match = _LS_LINE.match(line)
        if match:
            out[match.group(1)] = unescape(match.group(2))
    return out


class Xenstore:
    """xenstore through the ``xenstore-*`` tools.

    :param timeout_s: seconds one tool run may take (``> 0``).
    :param env: the tools' environment; default ours (so ``XENSTORED_PATH`` and
        ``XENSTORED_RUNDIR`` pass through).
    :param tool_dir: directory of the tools; default: found on ``PATH``.
    """

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S,
                 env: Optional[Mapping[str, str]] = None,
                 tool_dir: Optional[str] = None):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, not {timeout_s!r}")
        self.timeout_s = timeout_s
        self.env = dict(os.environ if env is None else env)
        self.tool_dir = tool_dir

    # -- running the tools ----------------------------------------------------

    def _tool(self, name: str) -> str:
        return os.path.join(self.tool_dir, name) if self.tool_dir else name

    def _run(self, tool: str, args: Sequence[str]) -> Tuple[int, str, str]:
        cmd = [self._tool(tool), *args]
        try:
            proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise EnvironmentProblem(
                f"{tool} not found (install Debian's xenstore-utils package)",
                source="xenstore") from None
        try:
            out, err = proc.communicate(timeout=self.timeout_s)
            returncode = proc.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise XenstoreTimeout(
                f"{tool} did not finish within {self.timeout_s:g} s (is xenstored stuck?)",
                token=" ".join(args), source="xenstore") from None
        return (returncode, (out or b"").decode("utf-8", errors="surrogateescape"),
                (err or b"").decode("utf-8", errors="replace"))

    def _failure(self, tool: str, args: Sequence[str], stderr: str,
                 missing_marks: Tuple[str, ...]) -> XenstoreError:
        text = " ".join(stderr.split())
        if "xs_open" in text or "xs_daemon_open" in text or "xs_domain_open" in text:
            reason = text.split("xs_open:", 1)[-1].strip() if "xs_open:" in text else text
            return XenstoreUnreachable(
                f"cannot connect to xenstored ({reason}; XENSTORED_PATH="
                f"{self.env.get('XENSTORED_PATH', '/var/run/xenstored/socket')})",
                source="xenstore")
        for mark in missing_marks:
            if mark in text:
                words = text.split(mark, 1)[1].split()
                return XenstoreMissing("no such xenstore node",
                                       token=words[0] if words else None,
                                       source="xenstore")
        return XenstoreError(f"{tool} failed: {text or 'no message'}",
                             token=" ".join(args) or None, source="xenstore")

    # -- reads ----------------------------------------------------------------

    def read(self, path: str) -> str:
        """The value at ``path`` (absolute, or relative to ``/local/domain/0``).

        :raises XenstoreMissing: no such node.
        :raises XenstoreUnreachable, XenstoreTimeout, XenstoreError: see the module.
        """
        return self.read_many([path])[path]

    def read_default(self, path: str, default: Optional[str] = None) -> Optional[str]:
        """Like :meth:`read`, but ``default`` for a missing node (other errors raise)."""
        return self.read_optional([path]).get(path, default)

    def read_many(self, paths: Sequence[str]) -> Dict[str, str]:
        """Every value of ``paths`` in one tool run; all must exist.

        :raises XenstoreMissing: naming the first missing path.
        """
        paths = list(paths)
        if not paths:
            return {}
        rc, out, err = self._run("xenstore-read", ["--", *paths])
        if rc != 0:
            raise self._failure("xenstore-read", paths, err, ("couldn't read path",))
        lines = out.split("\n")
        if len(lines) < len(paths):
            raise XenstoreError("xenstore-read printed fewer lines than paths",
                                token=" ".join(paths), source="xenstore")
        return {p: unescape(v) for p, v in zip(paths, lines)}

    def read_optional(self, paths: Sequence[str]) -> Dict[str, str]:
        """The values of those ``paths`` that exist (missing ones are left out).

        One tool run when all exist; each missing path costs one more run.
        :raises XenstoreUnreachable, XenstoreTimeout, XenstoreError: not for missing.
        """
        remaining = list(dict.fromkeys(paths))
        while remaining:
            try:
                return self.read_many(remaining)
            except XenstoreMissing as err:
                if err.token not in remaining:
                    raise
                remaining.remove(err.token)
        return {}

    def list(self, path: str) -> List[str]:
        """The child names of ``path``.

        :raises XenstoreMissing: no such node.
        """
        rc, out, err = self._run("xenstore-list", ["--", path])
        if rc != 0:
            raise self._failure("xenstore-list", [path], err, ("could not list path",))
        return [unescape(line) for line in out.split("\n") if line]

    def ls(self, path: str) -> Dict[str, str]:
        """Every node below ``path`` (absolute) with its value, in ONE tool run
        (``xenstore-ls -f``): absolute path -> unescaped value (``""`` for a
        directory node).

        :raises XenstoreMissing: no such node.
        """
        rc, out, err = self._run("xenstore-ls", ["-f", path])
        if rc != 0:
            if "No such file or directory" in err and "xs_open" not in err:
                raise XenstoreMissing("no such xenstore node", token=path, source="xenstore")
            raise self._failure("xenstore-ls", [path], err, ("could not list path",))
        return parse_ls(out)

    # -- writes ---------------------------------------------------------------

    def write(self, path: str, value: str) -> None:
        """Write one node (made with its parents when missing), raw."""
        self.write_many([(path, value)])

    def write_many(self, pairs: Iterable[Tuple[str, str]]) -> None:
        """Write several nodes in one tool run (one transaction), raw (``-R``)."""
        args: List[str] = []
        for path, value in pairs:
            args += [path, value]
        if not args:
            return
        rc, _out, err = self._run("xenstore-write", ["-R", "--", *args])
        if rc != 0:
            raise self._failure("xenstore-write", args[::2], err, ("could not write path",))

    def rm(self, path: str) -> None:
        """Remove a node and its subtree; a missing node whose parent exists is fine."""
        rc, _out, err = self._run("xenstore-rm", ["--", path])
        if rc != 0:
            raise self._failure("xenstore-rm", [path], err, ("could not remove path",))
