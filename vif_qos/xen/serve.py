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

The socket and its protocol (``vif-qos/1``): :mod:`vif_qos.xen.protocol`; the
socket comes from systemd (``systemd/vif-qos.socket``, ``LISTEN_FDS``) or is
bound here.

The policy file is re-read when its inode, size or mtime changed (checked at each
request); a file that no longer loads keeps the last good policy and logs the
error once.

Drift repair: the service listens to rtnetlink's TC group and nfnetlink's nftables
group (plain netlink sockets, only to wake up; :func:`drift_suspected` keeps the
deletions of our root qdiscs and of our table); 50 ms after such a deletion a
forked checker runs :func:`vif_qos.kernel.drift.find_drift` and, when something
of ours is gone, what ``vif-qos reload`` runs (:func:`repair_drift`:
:func:`vif_qos.xen.reload.reload`, with the cached policy). A repair that does not
fix it backs off (10 s, doubling to 5 min) so a foreign qdisc cannot make it spin.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import socket
import sys
import time
from typing import Dict, List, Optional

from vif_qos.errors import EnvironmentProblem, one_line
from vif_qos.kernel import netlink as nl
from vif_qos.model import HostSettings
from vif_qos.xen.hotlog import HotplugLog, library_log_to
from vif_qos.xen.protocol import encode_reply, handle_connection, send_message, socket_path

#: Requests handled at once; more are declined (the client runs in-process).
MAX_CHILDREN = 256
#: Seconds between a netlink change and the drift check (changes come in bursts).
DRIFT_DEBOUNCE_S = 0.05
DRIFT_BACKOFF_S = (10.0, 300.0)


def drift_suspected(data: bytes, proto: int, qdisc_major: int, table: str) -> bool:
    """Whether netlink notifications ``data`` (one ``recv``) delete something a
    shaped vif depends on (pure): a root qdisc with our handle (the uplink's HTB
    tree, a vif's TBF: RTM_DELQDISC, parent TC_H_ROOT, handle ``qdisc_major:0``),
    or our nftables table (NFT_MSG_DELTABLE, family bridge, name ``table``, as
    ``nft flush ruleset`` sends for every table). Our own applies and removals
    cause other messages or, for a vif's TBF, at most one cheap check. Messages
    not understood: yes."""
    try:
        messages = nl.decode_all(data, proto)
    except ValueError:
        return True
    deltable = nl.NFNL_SUBSYS_NFTABLES << 8 | nl.NFT_MSG_DELTABLE
    for msg in messages:
        if not msg.fixed:
            continue
        if proto == nl.NETLINK_ROUTE and msg.type == nl.RTM_DELQDISC:
            if msg.get("parent") == nl.TC_H_ROOT and msg.get("handle") == qdisc_major << 16:
                return True
        elif proto == nl.NETLINK_NETFILTER and msg.type == deltable \
                and msg.get("family") == nl.NFPROTO_BRIDGE \
                and msg.attrs.get(nl.NFTA_TABLE_NAME, b"").rstrip(b"\0") == table.encode():
            return True
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
            line = one_line(err)
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


# -- the drift checker, in a forked child -------------------------------------------

CHECK_CLEAN, CHECK_REPAIRED, CHECK_REMAINS, CHECK_FAILED = 0, 1, 2, 3


def repair_drift(policy, log: HotplugLog, reasons: List[str]) -> List[str]:
    """Log ``reasons`` and bring every running vif to its plan as ``vif-qos reload``
    does (:func:`vif_qos.xen.reload.reload` with ``policy``: changed in place, a vif
    whose ``online`` has not finished left to it, leftovers removed); log what
    changed; return the failure lines (empty: all done). xenstore is read as the
    hotplug runs read it (:func:`vif_qos.xen.services.default_services`).
    """
    from vif_qos.xen.reload import reload
    from vif_qos.xen.services import default_services

    started = time.monotonic()
    log.warning("drift: " + "; ".join(reasons) + "; reloading every running vif")
    with library_log_to(log):
        report = reload(xs=default_services(os.environ).xenstore, policy=policy)
    changed = 0
    for vif in report.result.vifs:
        changed += bool(vif.changes)
        for change in vif.changes:
            log.info(f"drift repair: {vif.vif}: {change}")
    for line in report.result.uplinks + report.result.leftovers:
        log.info(f"drift repair: {line}")
    for skipped in report.skipped:
        log.info(f"drift repair: {skipped.vif or skipped.backend} left alone: "
                 f"{skipped.reason}")
    failed = [f"{vif.vif}: {vif.error}" for vif in report.result.vifs if vif.error]
    failed += [f"{vif}: {message}" for vif, message, _status in report.failed]
    for line in failed:
        log.error(f"drift repair: {line}")
    log.info(f"drift repaired: {changed} vif(s) changed"
             + (f", {len(failed)} failed" if failed else "")
             + f" ({(time.monotonic() - started) * 1000:.0f} ms)")
    return failed


def check_and_repair(policy, log: HotplugLog) -> int:
    """Find drift and repair it (:func:`repair_drift`); one of the ``CHECK_*``
    statuses."""
    from vif_qos.kernel.drift import adopt_applied, find_drift
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
        repair_drift(policy, log, reasons)
        left = find_drift(host)
        if left:
            log.error("drift remains after the repair: " + "; ".join(left))
            return CHECK_REMAINS
        return CHECK_REPAIRED
    except Exception as err:
        log.error(f"drift check failed: {one_line(err)}")
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
    for proto, groups in ((nl.NETLINK_ROUTE, nl.RTMGRP_TC),
                          (nl.NETLINK_NETFILTER, 1 << (nl.NFNLGRP_NFTABLES - 1))):
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
    from vif_qos.xen import reload, services, xenstore  # noqa: F401
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
                    self.log.error(f"{kind}: {one_line(err)}")
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
                    send_message(conn, encode_reply("declined", "too many requests at once"))
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
