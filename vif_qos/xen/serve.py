"""``vif-qos serve``: the resident service that answers the hook's hotplug runs.

A hotplug run in its own process spends most of its time importing (pyroute2,
the nftables bindings, configobj) and parsing the policy, not in the kernel. The
service imports all that and parses the policy once, then answers each request
from the hook's client (``scripts/vif-qos-client``) in a process forked for it:
the request's ``online``/``offline``/``add``/``remove`` runs
:func:`vif_qos.xen.hotplug.hotplug_main` unchanged -- same validation of argv and
environment, same undo-on-failure apply, same ``hotplug-error``, same log lines
(written to the descriptor the client passed: the hotplug log) -- with the
cached policy. A fork per request keeps requests apart (the 30 s ``SIGALRM``
budget, the ``vif_qos`` logger, a crash) and costs about a millisecond.

The socket: ``$VIF_QOS_RUN_DIR/vif-qos.sock`` (default ``/run/vif-qos/vif-qos.sock``),
``SOCK_SEQPACKET``, mode 0600 in the root-owned run directory; from systemd
(``systemd/vif-qos.socket``, ``LISTEN_FDS``) or bound here. Each peer's
credentials are checked (``SO_PEERCRED``: uid 0 only).

The protocol (``vif-qos/1``), one message each way, fields separated by NUL:

- request: ``vif-qos/1``, the argv count N, N argv words (the command first),
  then ``KEY=VALUE`` environment items (only :data:`REQUEST_ENV_KEYS` and
  :data:`COMPARED_ENV_KEYS`), at most :data:`MAX_REQUEST_BYTES`; optionally one
  file descriptor (``SCM_RIGHTS``) to log to;
- replies: ``vif-qos/1 accepted`` then ``vif-qos/1 status N`` (the exit status);
  or ``vif-qos/1 declined REASON`` (the client runs vif-qos in-process: another
  policy file or xenstored than the service's, too many requests) or
  ``vif-qos/1 refused ONE-LINE-ERROR`` (not root, malformed, too large).

The policy file is re-read when its inode, size or mtime changed (checked at each
request); a file that no longer loads keeps the last good policy and logs the
error once.

Drift repair: the service listens to rtnetlink's TC group and nfnetlink's nftables
group (plain netlink sockets, only to wake up; :func:`drift_suspected` keeps the
deletions of our root qdiscs and of our table); 50 ms after such a deletion a
forked checker runs :func:`vif_qos.kernel.drift.find_drift` and, when something
of ours is gone, :func:`vif_qos.xen.rebuild.repair_drift`. A repair that does not
fix it backs off (10 s, doubling to 5 min) so a foreign qdisc cannot make it spin.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

from vif_qos.errors import EnvironmentProblem, InputError
from vif_qos.model import HostSettings
from vif_qos.xen.hotlog import HotplugLog
from vif_qos.xen.hotplug import HOTPLUG_COMMANDS

PROTOCOL = b"vif-qos/1"
SOCKET_NAME = "vif-qos.sock"
#: Largest request accepted, bytes (libxl's argv and environment take a few hundred).
MAX_REQUEST_BYTES = 65536
MAX_ARGV_WORDS = 64
#: Seconds a connected peer has to send its request.
REQUEST_TIMEOUT_S = 2.0
#: Requests handled at once; more are declined (the client runs in-process).
MAX_CHILDREN = 256
#: Seconds between a netlink change and the drift check (changes come in bursts).
DRIFT_DEBOUNCE_S = 0.05
DRIFT_BACKOFF_S = (10.0, 300.0)

#: The environment a request may set for its run: what libxl passes a vif script
#: (libxl_linux.c: libxl__hotplug_nic), what the hook passes, and the vif-qos
#: settings of one run. Any of these in the service's own environment is dropped.
REQUEST_ENV_KEYS = ("vif", "XENBUS_PATH", "XENBUS_TYPE", "XENBUS_BASE_PATH", "INTERFACE",
                    "netdev", "script", "type_if", "bridge", "VIF_QOS_HOTPLUG_TIMEOUT",
                    "VIF_QOS_XENSTORE_TIMEOUT", "VIF_QOS_DEBUG", "VIF_QOS_SYSLOG")
#: Keys whose value must be the service's own (absent on both sides, or equal): the
#: service answers only for its own policy file and xenstored; otherwise declined.
COMPARED_ENV_KEYS = ("VIF_QOS_CONFIG", "XENSTORED_PATH", "XENSTORED_RUNDIR")

# linux/netlink.h, linux/rtnetlink.h, linux/pkt_sched.h, linux/netfilter/nfnetlink.h,
# linux/netfilter/nf_tables.h, linux/netfilter.h
NETLINK_ROUTE, NETLINK_NETFILTER = 0, 12
RTMGRP_TC = 0x8
NFNLGRP_NFTABLES = 7
RTM_DELQDISC = 37
TC_H_ROOT = 0xFFFFFFFF
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_DELTABLE = 2
NFTA_TABLE_NAME = 1
NFPROTO_BRIDGE = 7
_NLMSGHDR = struct.Struct("=IHHII")
_TCMSG = struct.Struct("=BxxxiIII")
_NFGENMSG = struct.Struct("=BBH")
_NLATTR = struct.Struct("=HH")


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


def drift_suspected(data: bytes, proto: int, qdisc_major: int, table: str) -> bool:
    """Whether netlink notifications ``data`` (one ``recv``) delete something a
    shaped vif depends on (pure): a root qdisc with our handle (the uplink's HTB
    tree, a vif's TBF: RTM_DELQDISC, parent TC_H_ROOT, handle ``qdisc_major:0``),
    or our nftables table (NFT_MSG_DELTABLE, family bridge, name ``table``, as
    ``nft flush ruleset`` sends for every table). Our own applies and removals
    cause other messages or, for a vif's TBF, at most one cheap check."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return True  # not understood: check
        body = data[offset + _NLMSGHDR.size:offset + length]
        if proto == NETLINK_ROUTE and msg_type == RTM_DELQDISC and len(body) >= _TCMSG.size:
            _family, _index, handle, parent, _info = _TCMSG.unpack_from(body)
            if parent == TC_H_ROOT and handle == (qdisc_major << 16):
                return True
        elif proto == NETLINK_NETFILTER \
                and msg_type == (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_DELTABLE) \
                and len(body) >= _NFGENMSG.size:
            family = _NFGENMSG.unpack_from(body)[0]
            at = _NFGENMSG.size
            while family == NFPROTO_BRIDGE and at + _NLATTR.size <= len(body):
                alen, atype = _NLATTR.unpack_from(body, at)
                if alen < _NLATTR.size:
                    break
                if atype & 0x3FFF == NFTA_TABLE_NAME and \
                        body[at + _NLATTR.size:at + alen].rstrip(b"\0") == table.encode():
                    return True
                at += (alen + 3) & ~3
        offset += (length + 3) & ~3
    return False


# -- the policy, kept loaded --------------------------------------------------


class PolicyCache:
    """The parsed policy, re-read when the file changed (inode, size, mtime).

    :param conf: ``VIF_QOS_CONFIG`` of the service, or None for the default path.
    """

    def __init__(self, conf: Optional[str], log: HotplugLog):
        from vif_qos.config.policy import DEFAULT_PATH
        self.conf = conf
        self.path = conf or DEFAULT_PATH
        self.log = log
        self.policy = None
        self.key: Optional[tuple] = ("never read",)
        self.error: Optional[str] = None

    def _stat_key(self) -> Optional[tuple]:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def refresh(self):
        """The policy to use now: reloaded when the file changed; the last good one
        when the changed file does not load (the error logged once)."""
        key = self._stat_key()
        if key == self.key:
            return self.policy
        self.key = key
        from vif_qos.config.policy import load_policy
        try:
            policy = load_policy(self.conf)
        except Exception as err:
            line = err.one_line() if hasattr(err, "one_line") else f"{type(err).__name__}: {err}"
            if self.policy is not None:
                self.log.error(f"policy {self.path} not reloaded, the last good one stays "
                               f"in use: {line}")
            else:
                self.log.error(f"policy {self.path} does not load: {line}")
            self.error = line
            return self.policy
        if self.policy is not None or self.error:
            self.log.info(f"policy {self.path} reloaded")
        self.policy, self.error = policy, None
        return policy


# -- one request, in a forked child -----------------------------------------------


def _send(conn: socket.socket, data: bytes) -> bool:
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


def handle_connection(conn: socket.socket, policy_now, service_log: HotplugLog) -> None:
    """Answer one connection (in the child forked for it; changes its stderr and
    environment). ``policy_now`` is the policy to use (None: load as in-process)."""
    uid = peer_uid(conn)
    if uid != 0:
        service_log.warning(f"refused a request from uid {uid} (only root may ask)")
        # Take the request off the socket first (unread, nothing is acted on): a
        # unix socket closed with unread data resets the peer, which would then
        # never read why it was refused.
        conn.settimeout(1.0)
        try:
            _unread, fd = _receive(conn)
            if fd is not None:
                os.close(fd)
        except Exception:
            pass
        _send(conn, encode_reply("refused", f"peer uid {uid} is not root"))
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
        _send(conn, encode_reply("refused", err.one_line()))
        return
    except Declined as err:
        _send(conn, encode_reply("declined", str(err)))
        return
    except OSError as err:
        service_log.warning(f"request not received: {err.strerror or 'timed out'}")
        return
    if not _send(conn, encode_reply("accepted")):
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
    from vif_qos.xen.hotplug import default_services, hotplug_main
    services = default_services(env)
    if policy_now is not None:
        services.load_policy = lambda path=None: policy_now
    status = hotplug_main(request.command, list(request.argv), env, services)
    dev = request.env.get("vif") or request.env.get("INTERFACE") or "?"
    service_log.info(f"served {request.command} {dev}: exit status {status} "
                     f"({(time.monotonic() - started) * 1000:.0f} ms)")
    _send(conn, encode_reply("status", str(int(status))))


# -- the drift checker, in a forked child -------------------------------------------

CHECK_CLEAN, CHECK_REPAIRED, CHECK_REMAINS, CHECK_FAILED = 0, 1, 2, 3


def check_and_repair(policy, log: HotplugLog) -> int:
    """Find drift and repair it; one of the ``CHECK_*`` statuses."""
    from vif_qos.kernel.drift import adopt_applied, find_drift
    from vif_qos.xen.hotplug import default_services
    from vif_qos.xen.rebuild import repair_drift
    host = getattr(policy, "host", None)
    try:
        adopted = adopt_applied()
        if adopted:
            log.info(f"ledger started with the {adopted} vif(s) of the nftables table")
        reasons = find_drift(host)
        if not reasons:
            return CHECK_CLEAN
        if policy is None:
            log.error("drift: " + "; ".join(reasons) + "; not repaired: no policy loads")
            return CHECK_REMAINS
        repair_drift(default_services(os.environ).xenstore, policy, log, reasons)
        left = find_drift(host)
        if left:
            log.error("drift remains after the repair: " + "; ".join(left))
            return CHECK_REMAINS
        return CHECK_REPAIRED
    except Exception as err:
        text = err.one_line() if hasattr(err, "one_line") else f"{type(err).__name__}: {err}"
        log.error(f"drift check failed: {text}")
        return CHECK_FAILED


# -- the service ------------------------------------------------------------------


def _systemd_socket() -> Optional[socket.socket]:
    """The listening socket systemd passed (``LISTEN_PID``/``LISTEN_FDS``), or None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(key, None)
    if count < 1:
        return None
    return socket.socket(fileno=3)


def bind_socket(path: str) -> socket.socket:
    """A SOCK_SEQPACKET socket listening at ``path``, mode 0600; its directory must
    be owned by root and writable by nobody else.

    :raises EnvironmentProblem: the directory is not root's, or the bind failed.
    """
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    st = os.stat(directory)
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise EnvironmentProblem(f"{directory} must be owned by root and writable only by "
                                 "root (it holds the service's socket)", source="serve")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as err:
        sock.close()
        raise EnvironmentProblem(f"cannot listen at {path}: {err.strerror}",
                                 source="serve") from err
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


def _watch_sockets():
    """Netlink sockets that wake the service on qdisc and nftables changes."""
    out = []
    for proto, groups in ((NETLINK_ROUTE, RTMGRP_TC),
                          (NETLINK_NETFILTER, 1 << (NFNLGRP_NFTABLES - 1))):
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                 proto)
            sock.bind((0, groups))
            sock.setblocking(False)
            out.append(sock)
        except OSError:
            pass  # logged by the caller: no event-driven drift repair
    return out


def _preload(log: HotplugLog) -> None:
    """Import what a request needs, so a forked child imports nothing."""
    import subprocess  # noqa: F401  (xenstore tools)
    from vif_qos.config import planning, policy  # noqa: F401
    from vif_qos.kernel import apply, drift, netlink, tc  # noqa: F401
    from vif_qos.kernel import nft
    from vif_qos.xen import rebuild, xenstore  # noqa: F401
    netlink.preload()
    try:
        nft.open_ctx()  # loads libnftables once (a context per request is made anew)
    except EnvironmentProblem as err:
        log.error(err.one_line())


class Service:
    """The service's main loop (single-threaded: it forks)."""

    def __init__(self, listener: socket.socket, log: HotplugLog):
        self.listener = listener
        self.listener.setblocking(False)
        self.log = log
        self.policy = PolicyCache(os.environ.get("VIF_QOS_CONFIG") or None, log)
        self.children: Dict[int, str] = {}
        self.watchers = _watch_sockets()
        self.check_due: Optional[float] = time.monotonic()  # once at start
        self.backoff_s = 0.0
        self.quiet_until = 0.0
        self.stopping = False

    def _fork(self, kind: str, work) -> None:
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                self.listener.close()
                for w in self.watchers:
                    w.close()
                status = work()
            except BaseException as err:  # never return into the parent's loop
                try:
                    self.log.error(f"{kind}: internal error: {type(err).__name__}: {err}")
                except BaseException:
                    pass
            finally:
                try:
                    sys.stderr.flush()
                finally:
                    os._exit(status if isinstance(status, int) else 1)
        self.children[pid] = kind

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                if err.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.log.error(f"accept: {err.strerror}")
                    return
                raise
            try:
                if len(self.children) >= MAX_CHILDREN:
                    conn.setblocking(False)
                    _send(conn, encode_reply("declined", "too many requests at once"))
                    continue
                policy = self.policy.refresh()
                self._fork("request", lambda c=conn, p=policy: (
                    handle_connection(c, p, self.log), 0)[1])
            finally:
                conn.close()

    def _drain(self, sock: socket.socket) -> bool:
        """Read every pending notification; whether one suggests drift (an overrun,
        ENOBUFS, lost some: then yes)."""
        from vif_qos.kernel.nft import TABLE
        policy = self.policy.policy
        major = policy.host.qdisc_major if policy is not None else HostSettings().qdisc_major
        proto = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL)
        suspected = False
        while True:
            try:
                data = sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return suspected
            except OSError as err:
                if err.errno == errno.ENOBUFS:
                    suspected = True
                    continue
                return suspected
            if not data:
                return suspected
            suspected = suspected or drift_suspected(data, proto, major, TABLE)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            kind = self.children.pop(pid, None)
            if kind == "check":
                code = os.waitstatus_to_exitcode(status)
                if code in (CHECK_REMAINS, CHECK_FAILED):
                    self.backoff_s = min(max(self.backoff_s * 2, DRIFT_BACKOFF_S[0]),
                                         DRIFT_BACKOFF_S[1])
                    self.quiet_until = time.monotonic() + self.backoff_s
                    self.log.warning(f"next drift check in {self.backoff_s:g} s at the "
                                     "earliest")
                else:
                    self.backoff_s = 0.0

    def _maybe_check(self) -> None:
        now = time.monotonic()
        if self.check_due is None or now < self.check_due or now < self.quiet_until \
                or "check" in self.children.values():
            return
        self.check_due = None
        policy = self.policy.refresh()
        self._fork("check", lambda p=policy: check_and_repair(p, self.log))

    def run(self) -> int:
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, "accept")
        for w in self.watchers:
            sel.register(w, selectors.EVENT_READ, "netlink")
        if len(self.watchers) < 2:
            self.log.warning("netlink notifications unavailable: drift is repaired only "
                             "at start")

        def stop(signum, frame):
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.policy.refresh()
        self.log.info(f"serving at {self.listener.getsockname() or 'the systemd socket'}")
        while not self.stopping:
            timeout = 0.2
            if self.check_due is not None:
                timeout = max(0.0, min(timeout, max(self.check_due, self.quiet_until)
                                       - time.monotonic()))
            for key, _mask in sel.select(timeout):
                if key.data == "accept":
                    self._accept()
                elif self._drain(key.fileobj):
                    if self.check_due is None:
                        self.check_due = time.monotonic() + DRIFT_DEBOUNCE_S
            self._reap()
            self._maybe_check()
        self.log.info("stopping; requests in progress finish")
        deadline = time.monotonic() + 35.0
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        return 0


def serve(listener: Optional[socket.socket] = None) -> int:
    """Run the service until SIGTERM; return the exit status.

    :raises EnvironmentProblem: not root, or the socket cannot be made.
    """
    if os.geteuid() != 0:
        raise EnvironmentProblem("vif-qos serve must run as root", source="serve")
    log = HotplugLog(context="serve", log_path="")
    _preload(log)
    listener = listener or _systemd_socket() or bind_socket(socket_path())
    return Service(listener, log).run()
