"""The usage database: ``$VIF_QOS_STATE_DIR/usage.sqlite`` (Python's own sqlite3).

Layout (schema version :data:`SCHEMA_VERSION`, in table ``meta``):

- ``series``: one row per counter source. A guest's vif is keyed by domain name, uuid
  and devid (and ``port``: ``vif``, or ``emu`` for an HVM guest's emulated NIC), so
  its history continues across reboots and new domids; an uplink by its netdev name
  (``kind = 'uplink'``).
- ``samples``: one row per series per ``record`` run, in recording order (``id``):
  wall time, boot id and ``CLOCK_BOOTTIME`` (see :mod:`vif_qos.core.billing` for how
  they handle clock steps), the netdev incarnation (``domid/ifindex``), the netdev's
  64-bit byte and packet counters both ways and the shaper's drops and overlimits
  both ways ("in" toward the guest). SQLite integers are signed 64-bit: counters at
  or above 2**63 are stored as their two's complement and read back unchanged.
- ``moves``: what auto-overage did or would do (time, action, target, pool, reason).

WAL journal (readers never wait for ``record``), a busy timeout of
:data:`BUSY_TIMEOUT_MS`, and :func:`record_lock` (a short ``flock`` of its own,
never the host lock the hotplug path uses).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

from vif_qos.config.paths import state_path
from vif_qos.core.billing import Sample
from vif_qos.errors import EnvironmentProblem

SCHEMA_VERSION = 1
DB_NAME = "usage.sqlite"
LOCK_NAME = "usage.lock"
#: How long a writer waits for another (SQLite busy timeout), milliseconds.
BUSY_TIMEOUT_MS = 2000
#: How long ``record`` waits for another ``record`` run's lock, seconds.
LOCK_TIMEOUT_S = 2.0

_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,              -- 'vif' or 'uplink'
    domain TEXT NOT NULL,            -- guest name ('' for an uplink)
    uuid TEXT NOT NULL,              -- guest uuid ('' when unknown, and for an uplink)
    devid INTEGER NOT NULL,          -- -1 for an uplink
    port TEXT NOT NULL,              -- 'vif' | 'emu' | the uplink's netdev name
    UNIQUE (kind, domain, uuid, devid, port));
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    series_id INTEGER NOT NULL REFERENCES series(id),
    wall_s REAL NOT NULL,
    boot_id TEXT NOT NULL,
    uptime_s REAL,
    instance TEXT NOT NULL,          -- 'domid/ifindex' of the netdev read
    netdev TEXT NOT NULL,
    bridge TEXT,
    uplink TEXT,
    in_bytes INTEGER NOT NULL, out_bytes INTEGER NOT NULL,
    in_packets INTEGER NOT NULL, out_packets INTEGER NOT NULL,
    in_drops INTEGER, out_drops INTEGER,
    in_overlimits INTEGER, out_overlimits INTEGER);
CREATE INDEX IF NOT EXISTS samples_wall ON samples (wall_s);
CREATE INDEX IF NOT EXISTS samples_series ON samples (series_id, id);
CREATE TABLE IF NOT EXISTS moves (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    wall_s REAL NOT NULL,
    action TEXT NOT NULL,            -- 'assign' | 'unset'
    target TEXT NOT NULL,            -- NAME:DEVID
    pool TEXT,
    for_s INTEGER,
    reason TEXT NOT NULL,
    outcome TEXT NOT NULL);          -- 'done', or why it failed
"""


def _to_db(value: Optional[int]) -> Optional[int]:
    if value is None:
        return None
    value = int(value)
    return value - _U64 if value > _I64_MAX else value


def _from_db(value: Optional[int]) -> Optional[int]:
    if value is None:
        return None
    return value + _U64 if value < 0 else value


class SeriesKey(NamedTuple):
    """What a series is: ``kind`` ``vif``/``uplink``; for a vif the guest's
    ``domain``, ``uuid`` ('' unknown), ``devid`` and ``port`` (``vif``/``emu``);
    for an uplink ``port`` is its netdev name. (A tuple: reports hash it per sample.)"""

    kind: str
    domain: str
    uuid: str
    devid: int
    port: str

    @property
    def guest(self) -> Tuple[str, int]:
        return (self.domain, self.devid)


@dataclass(frozen=True)
class Reading:
    """One series' counters at one ``record`` run (see the module doc for units)."""

    key: SeriesKey
    instance: str
    netdev: str
    in_bytes: int
    out_bytes: int
    in_packets: int
    out_packets: int
    in_drops: Optional[int] = None
    out_drops: Optional[int] = None
    in_overlimits: Optional[int] = None
    out_overlimits: Optional[int] = None
    bridge: Optional[str] = None
    uplink: Optional[str] = None


@dataclass(frozen=True)
class Move:
    """A recorded auto-overage move."""

    wall_s: float
    action: str
    target: str
    pool: Optional[str]
    for_s: Optional[int]
    reason: str
    outcome: str


def db_path() -> str:
    """``$VIF_QOS_STATE_DIR/usage.sqlite``."""
    return state_path(DB_NAME)


@contextlib.contextmanager
def record_lock(path: Optional[str] = None,
                timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold ``usage.lock`` beside the database for one ``record`` run.

    :raises EnvironmentProblem: another run held it for ``timeout_s``.
    """
    path = path or state_path(LOCK_NAME)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise EnvironmentProblem(f"another vif-qos record holds {path} "
                                             f"(waited {timeout_s:g} s)") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


class UsageStore:
    """An open usage database (created with its schema on first use).

    :param path: default :func:`db_path`.
    :raises EnvironmentProblem: not a usage database, or a newer schema.
    """

    def __init__(self, path: Optional[str] = None, readonly: bool = False):
        self.path = path or db_path()
        if readonly and not os.path.exists(self.path):
            raise EnvironmentProblem(f"no usage recorded yet: {self.path} does not exist "
                                     "(vif-qos record, run by vif-qos-record.timer, makes it)")
        if not readonly:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                      isolation_level=None)
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not readonly:
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.executescript(_SCHEMA)
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                (str(SCHEMA_VERSION),))
            row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'") \
                .fetchone()
        except sqlite3.DatabaseError as err:
            raise EnvironmentProblem(f"{self.path}: not a usable usage database ({err})") \
                from None
        if row is None or int(row[0]) > SCHEMA_VERSION:
            raise EnvironmentProblem(f"{self.path}: schema version {row and row[0]} is not "
                                     f"one this vif-qos reads ({SCHEMA_VERSION})")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "UsageStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------

    def _series_id(self, key: SeriesKey) -> int:
        row = self.db.execute(
            "SELECT id FROM series WHERE kind=? AND domain=? AND uuid=? AND devid=? AND port=?",
            (key.kind, key.domain, key.uuid, key.devid, key.port)).fetchone()
        if row:
            return row[0]
        cur = self.db.execute("INSERT INTO series (kind, domain, uuid, devid, port) "
                              "VALUES (?, ?, ?, ?, ?)",
                              (key.kind, key.domain, key.uuid, key.devid, key.port))
        return cur.lastrowid

    def add_samples(self, wall_s: float, boot_id: str, uptime_s: Optional[float],
                    readings: Sequence[Reading]) -> None:
        """Store one ``record`` run's readings in one transaction."""
        with self._transaction():
            for r in readings:
                self.db.execute(
                    "INSERT INTO samples (series_id, wall_s, boot_id, uptime_s, instance, "
                    "netdev, bridge, uplink, in_bytes, out_bytes, in_packets, out_packets, "
                    "in_drops, out_drops, in_overlimits, out_overlimits) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (self._series_id(r.key), wall_s, boot_id, uptime_s, r.instance, r.netdev,
                     r.bridge, r.uplink, _to_db(r.in_bytes), _to_db(r.out_bytes),
                     _to_db(r.in_packets), _to_db(r.out_packets), _to_db(r.in_drops),
                     _to_db(r.out_drops), _to_db(r.in_overlimits), _to_db(r.out_overlimits)))

    def add_move(self, move: Move) -> None:
        with self._transaction():
            self.db.execute("INSERT INTO moves (wall_s, action, target, pool, for_s, reason, "
                            "outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (move.wall_s, move.action, move.target, move.pool, move.for_s,
                             move.reason, move.outcome))

    def purge(self, before_wall_s: float) -> int:
        """Delete samples and moves older than ``before_wall_s``; return the samples
        deleted (the retention setting)."""
        with self._transaction():
            n = self.db.execute("DELETE FROM samples WHERE wall_s < ?", (before_wall_s,)).rowcount
            self.db.execute("DELETE FROM moves WHERE wall_s < ?", (before_wall_s,))
        return n

    @contextlib.contextmanager
    def _transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- reading ------------------------------------------------------------------

    def samples(self, from_s: float, to_s: float,
                kind: Optional[str] = None) -> List[Sample]:
        """Samples with wall time in ``from_s``..``to_s``, in recording order, as
        :class:`~vif_qos.core.billing.Sample` whose ``series`` is a :class:`SeriesKey`."""
        sql = ("SELECT s.kind, s.domain, s.uuid, s.devid, s.port, m.wall_s, m.boot_id, "
               "m.uptime_s, m.instance, m.in_bytes, m.out_bytes FROM samples m "
               "JOIN series s ON s.id = m.series_id WHERE m.wall_s >= ? AND m.wall_s <= ?")
        args: list = [from_s, to_s]
        if kind:
            sql += " AND s.kind = ?"
            args.append(kind)
        sql += " ORDER BY m.id"
        return [Sample(series=SeriesKey(*row[:5]), wall_s=row[5], boot_id=row[6],
                       uptime_s=row[7], instance=row[8], in_bytes=_from_db(row[9]),
                       out_bytes=_from_db(row[10]))
                for row in self.db.execute(sql, args)]

    def latest_readings(self) -> List[Tuple[float, Reading]]:
        """The newest sample of every series (for ``metrics`` and tests)."""
        rows = self.db.execute(
            "SELECT s.kind, s.domain, s.uuid, s.devid, s.port, m.wall_s, m.instance, m.netdev, "
            "m.in_bytes, m.out_bytes, m.in_packets, m.out_packets, m.in_drops, m.out_drops, "
            "m.in_overlimits, m.out_overlimits, m.bridge, m.uplink FROM samples m "
            "JOIN series s ON s.id = m.series_id WHERE m.id IN "
            "(SELECT MAX(id) FROM samples GROUP BY series_id) ORDER BY m.id").fetchall()
        return [(r[5], Reading(SeriesKey(*r[:5]), r[6], r[7], *[_from_db(v) for v in r[8:16]],
                               bridge=r[16], uplink=r[17])) for r in rows]

    def moves(self, from_s: float = 0, to_s: float = float("inf")) -> List[Move]:
        return [Move(*row) for row in self.db.execute(
            "SELECT wall_s, action, target, pool, for_s, reason, outcome FROM moves "
            "WHERE wall_s >= ? AND wall_s <= ? ORDER BY id", (from_s, min(to_s, 1e18)))]

    def count_samples(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
