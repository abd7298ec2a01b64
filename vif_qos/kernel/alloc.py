"""The host lock and the allocation of leaf classids and mark values.

Locking follows Xen's ``tools/hotplug/Linux/locking.sh`` (``claim_lock`` /
``release_lock``): open the lock file, ``flock`` it exclusively, then check that
the path still names the inode we locked (another holder may have removed it on
release); retry if not. Release removes the file while still holding the lock.
The lock file is ``$VIF_QOS_RUN_DIR/lock``, default ``/run/vif-qos/lock``.

Allocation is a pure function of what the kernel holds (the classids of our
HTB classes and the entries in our nftables table), taken under the lock, so
concurrent applies never collide and the numbers can always be rebuilt.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, Optional

from vif_qos.errors import EnvironmentProblem, KernelError

DEFAULT_RUN_DIR = "/run/vif-qos"

# flock() locks belong to the open file description, so threads of one process
# exclude each other too; this re-entrancy guard only stops a thread from
# deadlocking on itself (apply_vif -> remove_vif inside one lock).
_held = threading.local()


class LockWait(threading.local):
    """How long this thread waited for the host lock, for a time budget that
    counts only its own work (:func:`vif_qos.xen.budget.deadline`).

    ``total_s()`` is every second spent blocked in ``flock`` so far, the current
    wait included; ``stalled_s()`` is, while blocked, the seconds since the lock
    last changed hands (a holder's release wakes every waiter: progress), else 0.
    Monotonic clock. Per thread (a threading.local; the deadline's SIGALRM
    handler runs in the main thread and reads the main thread's).
    """

    def __init__(self) -> None:
        self.done_s = 0.0
        self.since: Optional[float] = None
        self.progress_at: Optional[float] = None
        #: Seconds the lock was held, summed over this process's holds.
        self.held_s = 0.0

    def total_s(self) -> float:
        now = time.monotonic()
        return self.done_s + (now - self.since if self.since is not None else 0.0)

    def stalled_s(self) -> float:
        if self.since is None or self.progress_at is None:
            return 0.0
        return time.monotonic() - self.progress_at


LOCK_WAIT = LockWait()


def run_dir() -> str:
    """``$VIF_QOS_RUN_DIR`` or ``/run/vif-qos``."""
    return os.environ.get("VIF_QOS_RUN_DIR") or DEFAULT_RUN_DIR


@contextmanager
def host_lock(name: str = "lock") -> Iterator[None]:
    """Hold the host-wide vif-qos lock for the block (re-entrant per thread).

    Raises EnvironmentProblem when the run directory cannot be made or written.
    """
    if getattr(_held, "depth", 0):
        _held.depth += 1
        try:
            yield
        finally:
            _held.depth -= 1
        return
    directory = run_dir()
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    except OSError as err:
        raise EnvironmentProblem(f"cannot make the lock directory {directory}: "
                                 f"{err.strerror}") from err
    path = os.path.join(directory, name)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise EnvironmentProblem(f"cannot open the lock file {path}: "
                                     f"{err.strerror}") from err
        try:
            _flock_counted(fd)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)  # the holder released and removed it: the lock moved on
    _held.depth = 1
    taken = time.monotonic()
    try:
        yield
    finally:
        LOCK_WAIT.held_s += time.monotonic() - taken
        _held.depth = 0
        try:
            os.unlink(path)
        except OSError as err:  # pragma: no cover
            if err.errno != errno.ENOENT:
                raise
        os.close(fd)


def _flock_counted(fd: int) -> None:
    """``flock(fd, LOCK_EX)``, the time blocked added to :data:`LOCK_WAIT`."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    now = time.monotonic()
    LOCK_WAIT.since = now
    if LOCK_WAIT.progress_at is None:
        LOCK_WAIT.progress_at = now
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        now = time.monotonic()
        LOCK_WAIT.done_s += now - LOCK_WAIT.since
        LOCK_WAIT.since = None
        LOCK_WAIT.progress_at = now  # a release woke us: the lock moved


def mark_shift(mask: int) -> int:
    """Position of the lowest set bit of ``mask`` (a contiguous run of bits)."""
    if mask <= 0 or mask > 0xFFFFFFFF:
        raise KernelError(f"mark mask {mask:#x} must be a non-empty 32-bit mask")
    shift = (mask & -mask).bit_length() - 1
    run = mask >> shift
    if run & (run + 1):
        raise KernelError(f"mark mask {mask:#x} is not one contiguous run of bits")
    return shift


def lowest_free(used: Iterable[int], low: int, high: int) -> Optional[int]:
    """The smallest integer in ``[low, high]`` not in ``used``, or None."""
    taken = {u for u in used if low <= u <= high}
    for candidate in range(low, high + 1):
        if candidate not in taken:
            return candidate
    return None


def allocate_minor(used_minors: Iterable[int], classid_min: int,
                   classid_max: int) -> int:
    """A free leaf classid minor in ``[classid_min, classid_max]``."""
    minor = lowest_free(used_minors, classid_min, classid_max)
    if minor is None:
        raise KernelError(f"no free leaf classid left in "
                          f"{classid_min:#x}..{classid_max:#x}")
    return minor


def allocate_mark(used_marks: Iterable[int], mask: int) -> int:
    """A free mark value inside ``mask`` (index 1.. shifted into the mask).

    Index 0 (all mask bits clear) is never used: it means "no guest".
    """
    shift = mark_shift(mask)
    top = mask >> shift
    index = lowest_free((m >> shift for m in used_marks), 1, top)
    if index is None:
        raise KernelError(f"no free mark value left in mask {mask:#x} "
                          f"({top} values)")
    return index << shift
