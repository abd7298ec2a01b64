"""``vif-qos serve``'s protocol, ``vif-qos/1``, and the answer to one request.

The socket: ``$VIF_QOS_RUN_DIR/vif-qos.sock`` (default ``/run/vif-qos/vif-qos.sock``),
``SOCK_SEQPACKET``, mode 0600 in the root-owned run directory. Each peer's
credentials are checked (``SO_PEERCRED``: uid 0 only).

One message each way, fields separated by NUL:

- request: ``vif-qos/1``, the argv count N, N argv words (the command first),
  then ``KEY=VALUE`` environment items (only :data:`REQUEST_ENV_KEYS` and
  :data:`COMPARED_ENV_KEYS`), at most :data:`MAX_REQUEST_BYTES`; optionally one
  file descriptor (``SCM_RIGHTS``) to log to;
- replies: ``vif-qos/1 accepted`` then ``vif-qos/1 status N`` (the exit status);
  or ``vif-qos/1 declined REASON`` (the client runs vif-qos in-process: another
  policy file or xenstored than the service's, too many requests) or
  ``vif-qos/1 refused ONE-LINE-ERROR`` (not root, malformed, too large).

The hook's client (``scripts/vif-qos-client``) speaks it with the interpreter's
built-in modules only. :func:`handle_connection` answers one request in the
process forked for it: :func:`vif_qos.xen.hotplug.hotplug_main` unchanged, with
the service's cached policy.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

from vif_qos.errors import InputError
from vif_qos.xen.hotlog import HotplugLog
from vif_qos.xen.hotplug import HOTPLUG_COMMANDS

PROTOCOL = b"vif-qos/1"
SOCKET_NAME = "vif-qos.sock"
#: Largest request accepted, bytes (libxl's argv and environment take a few hundred).
MAX_REQUEST_BYTES = 65536
MAX_ARGV_WORDS = 64
#: Seconds a connected peer has to send its request.
REQUEST_TIMEOUT_S = 2.0

#: The environment a request may set for its run: what libxl passes a vif script
#: (libxl_linux.c: libxl__hotplug_nic), what the hook passes, and the vif-qos
#: settings of one run. Any of these in the service's own environment is dropped.
REQUEST_ENV_KEYS = ("vif", "XENBUS_PATH", "XENBUS_TYPE", "XENBUS_BASE_PATH", "INTERFACE",
                    "netdev", "script", "type_if", "bridge", "VIF_QOS_HOTPLUG_TIMEOUT",
                    "VIF_QOS_XENSTORE_TIMEOUT", "VIF_QOS_DEBUG", "VIF_QOS_SYSLOG")
#: Keys whose value must be the service's own (absent on both sides, or equal): the
#: service answers only for its own policy file and xenstored; otherwise declined.
COMPARED_ENV_KEYS = ("VIF_QOS_CONFIG", "XENSTORED_PATH", "XENSTORED_RUNDIR")


class RequestError(InputError):
    """A request that is not a valid ``vif-qos/1`` hotplug request."""


class Declined(Exception):
    """A valid request this service does not answer (the client runs in-process)."""


@dataclass(frozen=True)
class Request:
    """A decoded request: ``command`` (online, offline, add, remove), the words
    after it, and the environment items it carried."""

    command: str
    argv: Tuple[str, ...]
    env: Dict[str, str]


def socket_path() -> str:
    """``$VIF_QOS_RUN_DIR/vif-qos.sock`` (default ``/run/vif-qos/vif-qos.sock``)."""
    from vif_qos.kernel.alloc import run_dir
    return os.path.join(run_dir(), SOCKET_NAME)


def decode_request(data: bytes) -> Request:
    """Decode one request message (pure).

    :raises RequestError: one line naming what is wrong: too large, not
        ``vif-qos/1``, a bad argv count, an environment item without ``=``, a key
        not allowed or given twice, a command that is not a hotplug command.
    """
    if len(data) > MAX_REQUEST_BYTES:
        raise RequestError(f"request larger than {MAX_REQUEST_BYTES} bytes",
                           source="socket")
    fields = data.split(b"\0")
    if fields[0] != PROTOCOL or len(fields) < 3:
        raise RequestError("not a vif-qos/1 request", token=repr(data[:32])[2:-1],
                           source="socket")
    count = fields[1]
    if not count.isdigit() or not 1 <= int(count) <= MAX_ARGV_WORDS \
            or len(fields) < 2 + int(count):
        raise RequestError(f"bad argv count (1..{MAX_ARGV_WORDS} words that follow)",
                           token=repr(count[:16])[2:-1], source="socket")
    argv = [os.fsdecode(word) for word in fields[2:2 + int(count)]]
    env: Dict[str, str] = {}
    allowed = REQUEST_ENV_KEYS + COMPARED_ENV_KEYS
    for item in fields[2 + int(count):]:
        key, sep, value = os.fsdecode(item).partition("=")
        if not sep or key not in allowed:
            raise RequestError("not an allowed KEY=VALUE environment item",
                               token=key[:64], source="socket")
        if key in env:
            raise RequestError("environment key given twice", token=key, source="socket")
        env[key] = value
    if argv[0] not in HOTPLUG_COMMANDS:
        raise RequestError(f"not a hotplug command ({', '.join(HOTPLUG_COMMANDS)})",
                           token=argv[0][:64], source="socket")
    return Request(command=argv[0], argv=tuple(argv[1:]), env=env)


def run_env(request: Request, service_env: Mapping[str, str]) -> Dict[str, str]:
    """The environment the request's run sees: the service's, without libxl's
    keys, plus the request's (pure).

    :raises Declined: a compared key differs, or ``--help`` was asked.
    """
    for key in COMPARED_ENV_KEYS:
        if request.env.get(key) != service_env.get(key):
            raise Declined(f"{key} of the request ({request.env.get(key) or 'unset'}) is "
                           f"not the service's ({service_env.get(key) or 'unset'})")
    if any(word in ("-h", "--help") for word in request.argv):
        raise Declined("help is printed in-process")
    env = {k: v for k, v in service_env.items() if k not in REQUEST_ENV_KEYS}
    env.update(request.env)
    return env


def encode_reply(kind: str, value: str = "") -> bytes:
    """``vif-qos/1 KIND [VALUE]``; VALUE cut to one line of at most 1000 bytes."""
    text = " ".join(value.split()).encode("utf-8", errors="replace")[:1000]
    return b"\0".join([PROTOCOL, kind.encode()] + ([text] if value else []))


def peer_uid(conn: socket.socket) -> int:
    """The uid of the connected peer (``SO_PEERCRED``)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]



# -- one request, in a forked child -----------------------------------------------


def send_message(conn: socket.socket, data: bytes) -> bool:
    try:
        conn.sendmsg([data], [], socket.MSG_NOSIGNAL)
        return True
    except OSError:
        return False


def _receive(conn: socket.socket) -> Tuple[bytes, Optional[int]]:
    """The request message and the log descriptor passed with it (or None).

    :raises RequestError: truncated or too large.
    """
    fd_size = struct.calcsize("i")
    msg, ancdata, flags, _addr = conn.recvmsg(MAX_REQUEST_BYTES + 1,
                                              socket.CMSG_SPACE(4 * fd_size))
    fds = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % fd_size
            fds += list(struct.unpack(f"{usable // fd_size}i", data[:usable]))
    for extra in fds[1:]:
        os.close(extra)
    log_fd = fds[0] if fds else None
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(msg) > MAX_REQUEST_BYTES:
        if log_fd is not None:
            os.close(log_fd)
        raise RequestError(f"request larger than {MAX_REQUEST_BYTES} bytes (or more "
                           "than one descriptor)", source="socket")
    return msg, log_fd


def _refuse_peer(conn: socket.socket, uid: int, service_log: HotplugLog) -> None:
    service_log.warning(f"refused a request from uid {uid} (only root may ask)")
    # Take the request off the socket first (unread, nothing is acted on): a unix
    # socket closed with unread data resets the peer, which would then never read
    # why it was refused.
    conn.settimeout(1.0)
    try:
        _unread, fd = _receive(conn)
        if fd is not None:
            os.close(fd)
    except Exception:
        pass
    send_message(conn, encode_reply("refused", f"peer uid {uid} is not root"))


def handle_connection(conn: socket.socket, policy_now, service_log: HotplugLog) -> None:
    """Answer one connection (in the child forked for it; changes its stderr and
    environment). ``policy_now`` is the policy to use (None: load as in-process)."""
    uid = peer_uid(conn)
    if uid != 0:
        _refuse_peer(conn, uid, service_log)
        return
    conn.settimeout(REQUEST_TIMEOUT_S)
    try:
        data, log_fd = _receive(conn)
        if not data:
            return  # connected and closed
        request = decode_request(data)
        env = run_env(request, os.environ)
    except RequestError as err:
        service_log.warning(f"refused a request: {err.one_line()}")
        send_message(conn, encode_reply("refused", err.one_line()))
        return
    except Declined as err:
        send_message(conn, encode_reply("declined", str(err)))
        return
    except OSError as err:
        service_log.warning(f"request not received: {err.strerror or 'timed out'}")
        return
    if not send_message(conn, encode_reply("accepted")):
        return  # the client gave up and runs in-process
    conn.settimeout(None)
    started = time.monotonic()
    if log_fd is not None:
        sys.stderr.flush()
        # The service's own lines (its journal) keep going where they went.
        service_log.stderr = os.fdopen(os.dup(2), "w", encoding="utf-8",
                                       errors="replace")
        os.dup2(log_fd, 2)
        os.close(log_fd)
        env["VIF_QOS_HOTPLUG_LOG"] = ""  # HotplugLog: the passed descriptor is the log
    os.environ.clear()
    os.environ.update(env)
    from vif_qos.xen.hotplug import hotplug_main
    from vif_qos.xen.services import default_services
    services = default_services(env)
    if policy_now is not None:
        services.load_policy = lambda path=None: policy_now
    status = hotplug_main(request.command, list(request.argv), env, services)
    dev = request.env.get("vif") or request.env.get("INTERFACE") or "?"
    service_log.info(f"served {request.command} {dev}: exit status {status} "
                     f"({(time.monotonic() - started) * 1000:.0f} ms)")
    send_message(conn, encode_reply("status", str(int(status))))

