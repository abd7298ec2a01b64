"""A protocol-level xenstored test double: a unix-socket server speaking Xen's wire format.

xenstored cannot run without the hypervisor, so the tests and ``vif-qos simulate``
run this instead. It speaks the socket protocol of ``xen/include/public/io/xs_wire.h``
(a header of four little-endian uint32s ``type, req_id, tx_id, len``, then ``len``
bytes of nul-separated strings; errors are ``XS_ERROR`` replies carrying an errno
name such as ``"ENOENT"``), well enough that the real ``xenstore-read``,
``xenstore-write``, ``xenstore-rm``, ``xenstore-ls``, ``xenstore-list`` and
``xenstore-exists`` of Debian's xenstore-utils (libxenstore 4.17), and with them
Debian's unmodified ``/etc/xen/scripts/vif-bridge``, run against it unchanged: point
them at it with ``XENSTORED_PATH=<socket>`` (libxenstore's ``xs_daemon_socket()``
reads ``XENSTORED_PATH`` first and only falls back to ``$XENSTORED_RUNDIR/socket``,
so ``XENSTORED_RUNDIR`` is not needed).

Semantics follow ``tools/xenstored/core.c``:

- Every connection is dom0's (a socket connection to xenstored is privileged).
  Relative paths resolve under ``/local/domain/0``.
- Writing a node creates its missing parents with empty values; new nodes inherit
  their parent's permissions.
- ``RM`` of a missing node whose parent exists succeeds; it removes the whole subtree.
- ``DIRECTORY_PART`` returns a generation count and the children from an offset, with
  an empty string after the last one.
- ``WATCH`` fires once at once (the initial event), then on every change at or
  below the watched path (``@introduceDomain``/``@releaseDomain`` only fire at once).
- Transactions are accepted and always commit, but are not isolated: operations in
  a transaction apply at once (enough for the scripts, which read and write single
  keys; a failed operation changes nothing anyway).

Use from Python (threads)::

    with XenstoreDouble() as xs:
        xs.seed_vif(domid=3, devid=0, name="web1", rate="250000,50000")
        env = dict(os.environ, **xs.env())   # XENSTORED_PATH for the real tools
        ...
        assert xs.read("backend/vif/3/0/hotplug-status") == "connected"

or as a process: ``python -m vif_qos.sim.xsdouble --socket /tmp/xs.sock [--seed-vif ...]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import struct
import sys
import tempfile
import threading
import uuid as uuid_mod
from typing import Dict, Iterable, List, Optional, Tuple

from vif_qos.constants import DEFAULT_BRIDGE

# enum xsd_sockmsg_type (xs_wire.h); XS_DEBUG is called XS_CONTROL since Xen 4.9.
XS_CONTROL = 0
XS_DIRECTORY = 1
XS_READ = 2
XS_GET_PERMS = 3
XS_WATCH = 4
XS_UNWATCH = 5
XS_TRANSACTION_START = 6
XS_TRANSACTION_END = 7
XS_INTRODUCE = 8
XS_RELEASE = 9
XS_GET_DOMAIN_PATH = 10
XS_WRITE = 11
XS_MKDIR = 12
XS_RM = 13
XS_SET_PERMS = 14
XS_WATCH_EVENT = 15
XS_ERROR = 16
XS_IS_DOMAIN_INTRODUCED = 17
XS_RESUME = 18
XS_SET_TARGET = 19
XS_RESTRICT = 20
XS_RESET_WATCHES = 21
XS_DIRECTORY_PART = 22

HEADER = struct.Struct("<IIII")
#: XENSTORE_PAYLOAD_MAX in xs_wire.h: larger requests are refused with E2BIG.
PAYLOAD_MAX_BYTES = 4096
#: XENSTORE_ABS_PATH_MAX / XENSTORE_REL_PATH_MAX in xs_wire.h.
ABS_PATH_MAX = 3072
REL_PATH_MAX = 2048

_VALID_PATH_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/_@")


class XsErr(Exception):
    """An errno name sent back as an ``XS_ERROR`` reply (``"ENOENT"``, ``"EINVAL"``)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _Node:
    __slots__ = ("value", "children", "perms")

    def __init__(self, value: bytes = b"", perms: Optional[List[str]] = None):
        self.value = value
        self.children: Dict[str, "_Node"] = {}
        self.perms: List[str] = list(perms or ["n0"])


def _split(path: str) -> List[str]:
    return [p for p in path.split("/") if p]


def _check_perm_string(perm: str) -> None:
    if len(perm) < 2 or perm[0] not in "nrwb" or not perm[1:].isdigit():
        raise XsErr("EINVAL")


class Store:
    """The tree, its permissions and its watches; every method is thread-safe.

    Paths given to the public methods are absolute or relative to
    ``/local/domain/0``. ``domid`` is the caller's domain: 0 (dom0, may do
    anything) or a guest, which may only touch nodes it owns or has write
    permission on (``tools/xenstored/core.c: perm_for_conn``).
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.root = _Node()
        self.generation = 0
        self._watches: List[Tuple["_Connection", str, str, str]] = []
        for path in ("/local/domain/0", "/vm", "/tool", "/libxl"):
            self.mkdir(path)
        self.write("/local/domain/0/name", "Domain-0")
        self.write("/local/domain/0/domid", "0")

    # -- paths -------------------------------------------------------------

    @staticmethod
    def canonical(path: str, domid: int = 0) -> str:
        """Absolute form of ``path``; raises ``XsErr("EINVAL")`` for a bad one."""
        if not path:
            raise XsErr("EINVAL")
        if path.startswith("@"):
            return path
        if not path.startswith("/"):
            if len(path) > REL_PATH_MAX:
                raise XsErr("EINVAL")
            path = f"/local/domain/{domid}/{path}"
        if len(path) > ABS_PATH_MAX or "//" in path or not set(path) <= _VALID_PATH_CHARS:
            raise XsErr("EINVAL")
        if path != "/" and path.endswith("/"):
            raise XsErr("EINVAL")
        return path

    def _get(self, abspath: str) -> Optional[_Node]:
        node = self.root
        for part in _split(abspath):
            node = node.children.get(part)
            if node is None:
                return None
        return node

    def _perm_of(self, node: _Node, domid: int) -> str:
        """'b', 'r', 'w' or 'n': what ``domid`` may do to ``node``."""
        if domid == 0:
            return "b"
        owner = int(node.perms[0][1:])
        if owner == domid:
            return "b"
        for perm in node.perms[1:]:
            if int(perm[1:]) == domid:
                return perm[0]
        return node.perms[0][0]

    def _need(self, node: _Node, domid: int, want: str) -> None:
        have = self._perm_of(node, domid)
        if have != "b" and have != want:
            raise XsErr("EACCES")

    # -- operations (absolute or relative paths) ----------------------------

    def _readable(self, path: str, domid: int) -> _Node:
        """The node at ``path`` that ``domid`` may read (the caller holds the lock).

        :raises XsErr: ENOENT (no such node), EACCES (no read permission).
        """
        node = self._get(self.canonical(path, domid))
        if node is None:
            raise XsErr("ENOENT")
        self._need(node, domid, "r")
        return node

    def read(self, path: str, domid: int = 0) -> bytes:
        with self.lock:
            node = self._readable(path, domid)
            return node.value

    def exists(self, path: str) -> bool:
        with self.lock:
            return self._get(self.canonical(path)) is not None

    def directory(self, path: str, domid: int = 0) -> List[str]:
        with self.lock:
            node = self._readable(path, domid)
            return list(node.children)

    def _create(self, abspath: str, domid: int) -> Tuple[_Node, List[str]]:
        """The node at ``abspath``, made with its missing parents; and the made paths."""
        node = self.root
        made: List[str] = []
        walked = ""
        for part in _split(abspath):
            walked += "/" + part
            child = node.children.get(part)
            if child is None:
                self._need(node, domid, "w")
                perms = list(node.perms)
                if domid != 0:  # a guest becomes the owner of what it creates
                    perms = [f"n{domid}"] + [p for p in perms[1:]]
                child = _Node(perms=perms)
                node.children[part] = child
                made.append(walked)
            node = child
        return node, made

    def write(self, path: str, value, domid: int = 0) -> None:
        if isinstance(value, str):
            value = value.encode()
        with self.lock:
            abspath = self.canonical(path, domid)
            if abspath.startswith("@") or abspath == "/":
                raise XsErr("EINVAL")
            existing = self._get(abspath)
            if existing is not None:
                self._need(existing, domid, "w")
            node, _made = self._create(abspath, domid)
            node.value = bytes(value)
            self.generation += 1
            self._fire(abspath)

    def mkdir(self, path: str, domid: int = 0) -> None:
        with self.lock:
            abspath = self.canonical(path, domid)
            if abspath.startswith("@"):
                raise XsErr("EINVAL")
            if self._get(abspath) is not None:
                return
            self._create(abspath, domid)
            self.generation += 1
            self._fire(abspath)

    def rm(self, path: str, domid: int = 0) -> None:
        with self.lock:
            abspath = self.canonical(path, domid)
            if abspath == "/" or abspath.startswith("@"):
                raise XsErr("EINVAL")
            parts = _split(abspath)
            parent = self._get("/" + "/".join(parts[:-1]))
            if parent is None:
                raise XsErr("ENOENT")
            node = parent.children.get(parts[-1])
            if node is None:
                return  # "Didn't exist already?  Fine, if parent exists."
            self._need(node, domid, "w")
            self._need(parent, domid, "w")
            del parent.children[parts[-1]]
            self.generation += 1
            self._fire(abspath, removed=True)

    def get_perms(self, path: str, domid: int = 0) -> List[str]:
        with self.lock:
            node = self._readable(path, domid)
            return list(node.perms)

    def set_perms(self, path: str, perms: Iterable[str], domid: int = 0) -> None:
        perms = list(perms)
        if not perms:
            raise XsErr("EINVAL")
        for perm in perms:
            _check_perm_string(perm)
        with self.lock:
            abspath = self.canonical(path, domid)
            node = self._get(abspath)
            if node is None:
                raise XsErr("ENOENT")
            if domid != 0 and int(node.perms[0][1:]) != domid:
                raise XsErr("EACCES")
            node.perms = perms
            self.generation += 1
            self._fire(abspath)

    def dump(self, path: str = "/") -> Dict[str, str]:
        """Every node at or below ``path``: absolute path -> value (text)."""
        out: Dict[str, str] = {}
        with self.lock:
            start = self.canonical(path)
            node = self._get(start)
            if node is None:
                return out
            stack = [(start.rstrip("/") or "/", node)]
            while stack:
                where, node = stack.pop()
                out[where] = node.value.decode(errors="replace")
                for name, child in node.children.items():
                    stack.append(((where.rstrip("/")) + "/" + name, child))
        return out

    # -- watches ------------------------------------------------------------

    def add_watch(self, conn: "_Connection", path: str, token: str) -> None:
        abspath = self.canonical(path)
        with self.lock:
            for w in self._watches:
                if w[0] is conn and w[1] == path and w[3] == token:
                    raise XsErr("EEXIST")
            self._watches.append((conn, path, abspath, token))
        conn.send_event(path, token)  # the initial event, as xenstored sends it

    def remove_watch(self, conn: "_Connection", path: str, token: str) -> None:
        with self.lock:
            before = len(self._watches)
            self._watches = [w for w in self._watches
                             if not (w[0] is conn and w[1] == path and w[3] == token)]
            if len(self._watches) == before:
                raise XsErr("ENOENT")

    def drop_watches(self, conn: "_Connection") -> None:
        with self.lock:
            self._watches = [w for w in self._watches if w[0] is not conn]

    def _fire(self, abspath: str, removed: bool = False) -> None:
        """Fire the watches at or above ``abspath``; for a removal also those below
        it, reported with their own path (xenstored's ``fire_watches`` recursing)."""
        for conn, given, watched, token in list(self._watches):
            if watched.startswith("@"):
                continue
            changed = abspath
            if removed and watched.startswith(abspath.rstrip("/") + "/"):
                changed = watched
            if changed == watched or changed.startswith(watched.rstrip("/") + "/"):
                # Report the changed path in the form the watcher used (relative
                # watches get relative paths, as xenstored does).
                reported = changed
                if not given.startswith("/"):
                    prefix = "/local/domain/0/"
                    if abspath.startswith(prefix):
                        reported = changed[len(prefix):]
                conn.send_event(reported, token)


class _Connection:
    """One client socket: reads requests, sends replies and watch events."""

    def __init__(self, store: Store, sock: socket.socket):
        self.store = store
        self.sock = sock
        self.send_lock = threading.Lock()
        self.next_tx = 1
        self.open_tx: set = set()

    def send(self, msg_type: int, req_id: int, tx_id: int, payload: bytes) -> None:
        with self.send_lock:
            try:
                self.sock.sendall(HEADER.pack(msg_type, req_id, tx_id, len(payload)) + payload)
            except OSError:
                pass

    def send_event(self, path: str, token: str) -> None:
        self.send(XS_WATCH_EVENT, 0, 0, path.encode() + b"\0" + token.encode() + b"\0")

    def _recv_exact(self, size: int) -> Optional[bytes]:
        buf = b""
        while len(buf) < size:
            chunk = self.sock.recv(size - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def serve(self) -> None:
        try:
            while True:
                head = self._recv_exact(HEADER.size)
                if head is None:
                    return
                msg_type, req_id, tx_id, length = HEADER.unpack(head)
                if length > PAYLOAD_MAX_BYTES:
                    self.send(XS_ERROR, req_id, tx_id, b"E2BIG\0")
                    return
                body = self._recv_exact(length) if length else b""
                if body is None:
                    return
                try:
                    reply = self.handle(msg_type, req_id, tx_id, body)
                except XsErr as err:
                    reply = (XS_ERROR, err.name.encode() + b"\0")
                except Exception:  # a malformed request must not kill the connection
                    reply = (XS_ERROR, b"EINVAL\0")
                if reply is not None:
                    self.send(reply[0], req_id, tx_id, reply[1])
        except OSError:
            return
        finally:
            self.store.drop_watches(self)
            try:
                self.sock.close()
            except OSError:
                pass

    @staticmethod
    def _args(body: bytes, count: int) -> List[str]:
        parts = body.split(b"\0")
        if parts and parts[-1] == b"":
            parts = parts[:-1]
        if len(parts) < count:
            raise XsErr("EINVAL")
        return [p.decode(errors="surrogateescape") for p in parts]

    @staticmethod
    def _one(body: bytes) -> str:
        # onearg(): the payload must be a single nul-terminated string.
        if not body.endswith(b"\0") or b"\0" in body[:-1]:
            raise XsErr("EINVAL")
        return body[:-1].decode(errors="surrogateescape")

    def handle(self, msg_type: int, req_id: int, tx_id: int,
               body: bytes) -> Optional[Tuple[int, bytes]]:
        """Answer one request: the reply's (type, payload), or ``None`` when sent.

        One method per message type (:data:`_HANDLERS`); the administrative ones
        (introduce, release, resume, set_target, restrict) are refused with EACCES
        as xenstored refuses them to an unprivileged caller, unknown types EINVAL.
        """
        if tx_id and msg_type not in (XS_TRANSACTION_START,) and tx_id not in self.open_tx:
            raise XsErr("ENOENT")
        if msg_type in (XS_INTRODUCE, XS_RELEASE, XS_RESUME, XS_SET_TARGET, XS_RESTRICT):
            raise XsErr("EACCES")
        handler = self._HANDLERS.get(msg_type)
        if handler is None:
            raise XsErr("EINVAL")
        payload = handler(self, body, req_id, tx_id)
        return None if payload is None else (msg_type, payload)

    # Each handler: (body, req_id, tx_id) -> the reply payload, or None when it
    # sent the reply itself.
    _OK = b"OK\0"

    def _read(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        return self.store.read(self._one(body))

    def _write(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        path, _, value = body.partition(b"\0")
        self.store.write(path.decode(errors="surrogateescape"), value)
        return self._OK

    def _mkdir(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        self.store.mkdir(self._one(body))
        return self._OK

    def _rm(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        self.store.rm(self._one(body))
        return self._OK

    def _directory(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        names = self.store.directory(self._one(body))
        payload = b"".join(n.encode() + b"\0" for n in names)
        if len(payload) > PAYLOAD_MAX_BYTES:
            raise XsErr("E2BIG")
        return payload

    def _directory_part_request(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        path, offset = self._args(body, 2)[:2]
        if not offset.isdigit():
            raise XsErr("EINVAL")
        return self._directory_part(path, int(offset))

    def _get_perms(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        return b"".join(p.encode() + b"\0" for p in self.store.get_perms(self._one(body)))

    def _set_perms(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        args = self._args(body, 2)
        self.store.set_perms(args[0], args[1:])
        return self._OK

    def _transaction_start(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        if tx_id:
            raise XsErr("EBUSY")
        with self.store.lock:
            tid = self.next_tx
            self.next_tx += 1
            self.open_tx.add(tid)
        return str(tid).encode() + b"\0"

    def _transaction_end(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        arg = self._one(body)
        if arg not in ("T", "F") or tx_id not in self.open_tx:
            raise XsErr("EINVAL" if arg not in ("T", "F") else "ENOENT")
        self.open_tx.discard(tx_id)
        return self._OK

    def _watch(self, body: bytes, req_id: int, tx_id: int) -> None:
        path, token = self._args(body, 2)[:2]
        self.store.canonical(path)
        # The ack goes out before the initial event (xenstored's do_watch:
        # send_ack, then fire_watch of the watched path).
        with self.store.lock:
            self.send(XS_WATCH, req_id, tx_id, self._OK)
            self.store.add_watch(self, path, token)
        return None

    def _unwatch(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        path, token = self._args(body, 2)[:2]
        self.store.remove_watch(self, path, token)
        return self._OK

    def _reset_watches(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        self.store.drop_watches(self)
        return self._OK

    def _get_domain_path(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        domid = self._one(body)
        if not domid.isdigit():
            raise XsErr("EINVAL")
        return f"/local/domain/{int(domid)}\0".encode()

    def _is_domain_introduced(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        domid = self._one(body)
        known = domid.isdigit() and self.store.exists(f"/local/domain/{int(domid)}")
        return b"T\0" if known else b"F\0"

    def _control(self, body: bytes, req_id: int, tx_id: int) -> bytes:
        return self._OK

    _HANDLERS = {
        XS_READ: _read, XS_WRITE: _write, XS_MKDIR: _mkdir, XS_RM: _rm,
        XS_DIRECTORY: _directory, XS_DIRECTORY_PART: _directory_part_request,
        XS_GET_PERMS: _get_perms, XS_SET_PERMS: _set_perms,
        XS_TRANSACTION_START: _transaction_start, XS_TRANSACTION_END: _transaction_end,
        XS_WATCH: _watch, XS_UNWATCH: _unwatch, XS_RESET_WATCHES: _reset_watches,
        XS_GET_DOMAIN_PATH: _get_domain_path,
        XS_IS_DOMAIN_INTRODUCED: _is_domain_introduced, XS_CONTROL: _control,
    }

    def _directory_part(self, path: str, offset: int) -> bytes:
        with self.store.lock:
            names = self.store.directory(path)
            gen = str(self.store.generation).encode() + b"\0"
        children = b"".join(n.encode() + b"\0" for n in names)
        if offset >= len(children):
            return gen + b"\0"
        maxlen = PAYLOAD_MAX_BYTES - len(gen) - 1
        chunk = b""
        rest = children[offset:]
        for name in rest.split(b"\0")[:-1]:
            if len(chunk) + len(name) + 1 > maxlen:
                break
            chunk += name + b"\0"
        if offset + len(chunk) == len(children):
            chunk += b"\0"
        return gen + chunk


class XenstoreDouble:
    """The xenstored double: a :class:`Store` served on a unix socket.

    :param socket_path: where to listen; default a fresh temporary directory's
        ``socket``, removed by :meth:`stop`.
    """

    def __init__(self, socket_path: Optional[str] = None):
        self._own_dir: Optional[str] = None
        if socket_path is None:
            self._own_dir = tempfile.mkdtemp(prefix="vif-qos-xs-")
            socket_path = os.path.join(self._own_dir, "socket")
        self.socket_path = socket_path
        self.store = Store()
        self._sock: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._conns: List[_Connection] = []

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> "XenstoreDouble":
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.socket_path)
        sock.listen(128)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="xsdouble",
                                        daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            conn = _Connection(self.store, client)
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: _Connection) -> None:
        conn.serve()
        try:
            self._conns.remove(conn)
        except ValueError:
            pass

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        for conn in list(self._conns):
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        if self._own_dir is not None:
            try:
                os.rmdir(self._own_dir)
            except OSError:
                pass

    def __enter__(self) -> "XenstoreDouble":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def env(self) -> Dict[str, str]:
        """Environment variables that point libxenstore's tools at this double."""
        return {"XENSTORED_PATH": self.socket_path}

    # -- direct access (dom0's view; no socket round trip) ---------------------

    def read(self, path: str, default: Optional[str] = None) -> Optional[str]:
        """The value at ``path`` as text, or ``default`` when the node is missing."""
        try:
            return self.store.read(path).decode(errors="replace")
        except XsErr as err:
            if err.name == "ENOENT":
                return default
            raise

    def write(self, path: str, value: str) -> None:
        self.store.write(path, value)

    def rm(self, path: str) -> None:
        self.store.rm(path)

    def exists(self, path: str) -> bool:
        return self.store.exists(path)

    def set_perms(self, path: str, perms: Iterable[str]) -> None:
        self.store.set_perms(path, perms)

    def guest_write(self, domid: int, path: str, value: str) -> None:
        """Write as guest ``domid`` would, permission checks included.

        :raises XsErr: ``EACCES`` where the guest may not write (a backend node).
        """
        self.store.write(path, value, domid=domid)

    def dump(self, path: str = "/") -> Dict[str, str]:
        return self.store.dump(path)

    # -- seeding ----------------------------------------------------------------

    def seed_domain(self, domid: int, name: str, uuid: Optional[str] = None) -> str:
        """Make a guest's domain nodes as libxl does; return its uuid.

        ``/local/domain/<domid>`` owned by the guest (``n<domid>``) with ``name``,
        ``domid`` and ``vm`` = ``/vm/<uuid>``; ``/vm/<uuid>/name``, owned by dom0.
        (``tools/libs/light/libxl_create.c: libxl__domain_make``.)
        """
        uuid = uuid or str(uuid_mod.uuid4())
        dom = f"/local/domain/{domid}"
        vm = f"/vm/{uuid}"
        s = self.store
        with s.lock:
            s.mkdir(dom)
            s.set_perms(dom, ["n0", f"r{domid}"])
            s.write(f"{dom}/vm", vm)
            s.write(f"{dom}/name", name)
            s.write(f"{dom}/domid", str(domid))
            s.mkdir(f"{dom}/device")
            s.set_perms(f"{dom}/device", [f"n{domid}"])
            s.mkdir(f"{dom}/data")
            s.set_perms(f"{dom}/data", [f"n{domid}"])
            s.write(f"{vm}/name", name)
            s.write(f"{vm}/uuid", uuid)
        return uuid

    def seed_vif(self, domid: int, devid: int = 0, *, name: Optional[str] = None,
                 uuid: Optional[str] = None, bridge: str = DEFAULT_BRIDGE,
                 mac: Optional[str] = None, script: str = "/etc/xen/scripts/vif-bridge",
                 nic_type: str = "vif", vifname: Optional[str] = None,
                 ip: Optional[str] = None, gatewaydev: Optional[str] = None,
                 mtu: Optional[int] = None, rate: Optional[str] = None,
                 backend_domid: int = 0) -> str:
        """Write exactly the keys libxl writes for one vif; return the backend path.

        From ``tools/libs/light/libxl_nic.c: libxl__set_xenstore_nic`` and
        ``libxl_device.c: libxl__device_generic_add``. Backend
        ``/local/domain/<backend>/backend/vif/<domid>/<devid>/`` (owner the backend
        domain, readable by the guest): ``frontend-id``, ``frontend``, ``online``
        (``1``), ``state`` (``1``), ``script``, ``mac``, ``bridge``, ``handle``,
        ``type`` (``vif`` or ``vif_ioemu``), ``hotplug-status`` (empty), and when
        given ``vifname``, ``ip``, ``gatewaydev``, ``mtu`` (libxl writes it only when
        not 1500) and ``rate`` (``"<bytes_per_interval>,<interval_us>"``). Frontend
        ``/local/domain/<domid>/device/vif/<devid>/`` (owned by the guest, readable
        by the backend): ``backend-id``, ``backend``, ``state``, ``handle``, ``mac``,
        ``trusted``, and a read-only ``mtu``. The domain nodes are made by
        :meth:`seed_domain` when ``/local/domain/<domid>/name`` is missing.
        """
        s = self.store
        if name is not None or not s.exists(f"/local/domain/{domid}/name"):
            self.seed_domain(domid, name or f"guest{domid}", uuid)
        mac = mac or "00:16:3e:%02x:%02x:%02x" % ((domid >> 8) & 0x7F, domid & 0xFF, devid & 0xFF)
        back = f"/local/domain/{backend_domid}/backend/vif/{domid}/{devid}"
        front = f"/local/domain/{domid}/device/vif/{devid}"
        backkeys: List[Tuple[str, str]] = [
            ("frontend-id", str(domid)), ("frontend", front), ("online", "1"),
            ("state", "1"), ("script", script), ("mac", mac),
        ]
        if vifname is not None:
            backkeys.append(("vifname", vifname))
        if ip is not None:
            backkeys.append(("ip", ip))
        if gatewaydev is not None:
            backkeys.append(("gatewaydev", gatewaydev))
        if rate is not None:
            backkeys.append(("rate", rate))
        if mtu is not None and mtu != 1500:
            backkeys.append(("mtu", str(mtu)))
        backkeys += [("bridge", bridge), ("handle", str(devid)), ("type", nic_type),
                     ("hotplug-status", "")]
        frontkeys = [("backend-id", str(backend_domid)),
                     ("backend", back), ("state", "1"), ("handle", str(devid)),
                     ("mac", mac), ("trusted", "1")]
        with s.lock:
            s.mkdir(back)
            s.set_perms(back, [f"n{backend_domid}", f"r{domid}"])
            for key, value in backkeys:
                s.write(f"{back}/{key}", value)
            s.mkdir(front)
            s.set_perms(front, [f"n{domid}", f"r{backend_domid}"])
            for key, value in frontkeys:
                s.write(f"{front}/{key}", value)
            s.write(f"{front}/mtu", str(mtu or 1500))
            s.set_perms(f"{front}/mtu", [f"n{backend_domid}", f"r{domid}"])
        return back

    def netback_probe(self, domid: int, devid: int = 0, backend_domid: int = 0,
                      max_queues: int = 2) -> None:
        """Write what netback writes when it probes the backend, before libxl runs ``online``.

        From ``drivers/net/xen-netback/xenbus.c: netback_probe`` (Linux 6.1):
        ``feature-sg``, ``feature-gso-tcpv4``, ``feature-gso-tcpv6``,
        ``feature-ipv6-csum-offload``, ``feature-rx-copy`` (1), ``feature-rx-flip``
        (0), ``feature-multicast-control``, ``feature-dynamic-multicast-control``,
        ``feature-xdp-headroom``, ``feature-split-event-channels``,
        ``multi-queue-max-queues`` (``max_queues``: dom0's vCPUs), ``feature-ctrl-ring``,
        then ``state`` = 2 (InitWait): libxl waits for that state before it runs the
        script. Seen under real Xen 4.17 with a Debian 12 dom0 at ``xl create``'s
        online: these keys, ``state`` 2, the frontend still at state 1.
        """
        back = f"/local/domain/{backend_domid}/backend/vif/{domid}/{devid}"
        keys = [("feature-sg", "1"), ("feature-gso-tcpv4", "1"), ("feature-gso-tcpv6", "1"),
                ("feature-ipv6-csum-offload", "1"), ("feature-rx-copy", "1"),
                ("feature-rx-flip", "0"), ("feature-multicast-control", "1"),
                ("feature-dynamic-multicast-control", "1"), ("feature-xdp-headroom", "1"),
                ("feature-split-event-channels", "1"),
                ("multi-queue-max-queues", str(max_queues)), ("feature-ctrl-ring", "1"),
                ("state", "2")]
        with self.store.lock:
            for key, value in keys:
                self.store.write(f"{back}/{key}", value)

    def close_vif(self, domid: int, devid: int = 0, backend_domid: int = 0,
                  detach: bool = False) -> None:
        """Leave the vif's nodes as libxl's ``offline`` run finds them.

        Seen under real Xen 4.17 after ``xl shutdown``, ``xl network-detach`` and ``xl
        destroy``: the backend keys still readable with ``online`` = 0 and ``state`` =
        6 (Closed), no ``hotplug-status`` (a ``hotplug-error`` stays); the netdev gone
        (the caller's to remove: :meth:`vif_qos.sim.net.SimHost.remove_guest`). The
        frontend directory is gone after a shutdown or destroy; after
        ``network-detach`` (``detach``) it is still there, at state 6.
        """
        back = f"/local/domain/{backend_domid}/backend/vif/{domid}/{devid}"
        s = self.store
        with s.lock:
            if not s.exists(back):
                return
            s.write(f"{back}/online", "0")
            s.write(f"{back}/state", "6")
            front = f"/local/domain/{domid}/device/vif/{devid}"
            if detach and s.exists(front):
                s.write(f"{front}/state", "6")
            for path in [f"{back}/hotplug-status"] + ([] if detach else [front]):
                try:
                    s.rm(path)
                except XsErr:
                    pass

    def remove_vif(self, domid: int, devid: int = 0, backend_domid: int = 0) -> None:
        """Remove the vif's backend and frontend directories (libxl after offline)."""
        for path in (f"/local/domain/{backend_domid}/backend/vif/{domid}/{devid}",
                     f"/local/domain/{domid}/device/vif/{devid}"):
            try:
                self.store.rm(path)
            except XsErr:
                pass


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m vif_qos.sim.xsdouble --socket PATH``: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m vif_qos.sim.xsdouble",
        description="A xenstored test double on a unix socket (point XENSTORED_PATH at it).")
    parser.add_argument("--socket", required=True, help="unix socket path to listen on")
    parser.add_argument("--seed-vif", action="append", default=[], metavar="DOMID.DEVID[:KEY=VALUE,...]",
                        help="seed a vif as libxl would, e.g. 3.0:name=web1,rate=250000,50000"
                             " (keys: name, bridge, mac, vifname, ip, mtu, rate, type)")
    args = parser.parse_args(argv)
    double = XenstoreDouble(args.socket)
    for spec in args.seed_vif:
        ids, _, opts = spec.partition(":")
        domid_s, _, devid_s = ids.partition(".")
        kw: Dict[str, object] = {}
        key = None
        for item in opts.split(",") if opts else []:
            if "=" in item:
                key, _, value = item.partition("=")
                kw[key] = value
            elif key is not None:  # a comma inside a value (rate=250000,50000)
                kw[key] = f"{kw[key]},{item}"
        if "type" in kw:
            kw["nic_type"] = kw.pop("type")
        if "mtu" in kw:
            kw["mtu"] = int(kw["mtu"])  # type: ignore[arg-type]
        double.seed_vif(int(domid_s), int(devid_s or 0), **kw)  # type: ignore[arg-type]
    double.start()
    print(f"xenstored double listening on {args.socket}; "
          f"export XENSTORED_PATH={args.socket}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    double.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
