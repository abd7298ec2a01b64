"""A simulated dom0 that runs Xen's real hotplug scripts, leaving the host untouched.

Used by the end-to-end tests (tests/test_hotplug_e2e.py) and ``vif-qos simulate``.
Simulation code (house rule: only ``vif_qos/sim/`` may run ``ip``; this also runs
``unshare`` and ``mount`` inside a private mount namespace).

A :class:`Dom0` joins three things:

- a :class:`vif_qos.sim.net.SimHost` (bridge ``xenbr0``, uplink ``peth0``, guests'
  vif veths, all in namespaces it deletes);
- the xenstored double, reached through ``XENSTORED_PATH``;
- a private install tree: a copy of the host's ``/etc/xen`` (Debian's unmodified
  scripts) into which ``vif-qos install --root`` put the hook, the wrapper, the
  udev rules and the policy file, and an empty ``/var/log`` with ``xen/``.

Why a private mount namespace: vif-bridge's ``call_hooks`` looks for hooks at the
fixed path ``/etc/xen/scripts/vif-post.d`` (not beside itself), and
``xen-hotplug-common.sh`` appends its stderr to ``/var/log/xen/xen-hotplug.log``
and dies where ``/var/log/xen`` does not exist (a machine without Xen). A copied
scripts directory alone would miss the hook; writing into the host's ``/etc/xen``
or ``/var/log`` would touch the host. So every script runs as
``unshare -m sh -c 'mount --bind TREE/etc/xen /etc/xen; mount --bind TREE/var/log
/var/log; exec ip netns exec DOM0 SCRIPT ...'``: the bind mounts exist only in that
short-lived mount namespace (``unshare -m`` makes mounts private), the script sees
the real paths, and nothing is left behind on the host whatever happens.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from vif_qos.cli.install import install
from vif_qos.errors import EnvironmentProblem
from vif_qos.sim.net import SimHost
from vif_qos.sim.xsdouble import XenstoreDouble

HOST_XEN_DIR = "/etc/xen"
#: The hook directory, relative to the tree (vif-bridge's call_hooks looks here).
#: The policy the hotplug benchmarks use: xenbr0's uplink peth0 at 1 Gbit/s, every
#: guest 10 Mbit/s each way.
EVERY_GUEST_10MBIT_POLICY = """\
[bridges]
uplink = peth0
rate = 1gbit
[defaults]
rate_in = 10mbit
rate_out = 10mbit
"""

#: The policy of the latency test and benchmark: every leaf queue a bfifo (what this
#: kernel has; fq_codel is not built here), xenbr0's uplink peth0 at 10 Gbit/s so
#: that only the guests' own rates limit.
BFIFO_10GBIT_UPLINK_POLICY = """
[host]
leaf_qdisc = bfifo
[bridges]
    [[xenbr0]]
    uplink = peth0
    rate = 10gbit
"""

HOOK_DIR_REL = "etc/xen/scripts/vif-post.d"
VIF_BRIDGE = "/etc/xen/scripts/vif-bridge"
WRAPPER = "/etc/xen/scripts/vif-qos"

_RUNNER = ('mount --bind "$VQ_TREE/etc/xen" /etc/xen && '
           'mount --bind "$VQ_TREE/var/log" /var/log && '
           'exec ip netns exec "$VQ_NS" "$@"')


def vif_qos_program() -> str:
    """The vif-qos program of the running Python (its venv's), else the one on PATH.

    :raises EnvironmentProblem: none found.
    """
    path = os.path.join(os.path.dirname(sys.executable), "vif-qos")
    if os.access(path, os.X_OK):
        return path
    found = shutil.which("vif-qos")
    if found:
        return os.path.abspath(found)
    raise EnvironmentProblem(f"no vif-qos program beside {sys.executable} nor on PATH "
                             "(install the package, or use ./dev)")


class Dom0:
    """A simulated dom0 with Xen's scripts, vif-qos installed and xenstore.

    :param tree: an empty directory for the private ``/etc/xen`` and ``/var/log``.
    :param policy: the text of ``/etc/xen/vif-qos.conf`` (``None``: the example).
    """

    def __init__(self, tree: str, policy: Optional[str] = None, prefix: str = "vqt-"):
        for tool, package in (("unshare", "util-linux"), ("ip", "iproute2"),
                              ("xenstore-read", "xenstore-utils")):
            if shutil.which(tool) is None:
                raise EnvironmentProblem(f"{tool} is missing (Debian package {package})")
        if not os.path.isfile(VIF_BRIDGE):
            raise EnvironmentProblem(f"{VIF_BRIDGE} is missing (Debian package "
                                     "xen-utils-common)")
        self.tree = tree
        shutil.copytree(HOST_XEN_DIR, os.path.join(tree, "etc", "xen"), symlinks=True)
        os.makedirs(os.path.join(tree, "var", "log", "xen"))
        self.program = vif_qos_program()
        install(tree, vif_qos=self.program)
        self.policy_path = os.path.join(tree, "etc", "xen", "vif-qos.conf")
        if policy is not None:
            self.set_policy(policy)
        self.host = SimHost(prefix=prefix)
        try:
            self.xs = XenstoreDouble(os.path.join(tree, "xenstored.sock")).start()
        except BaseException:
            self.host.close()
            raise

    def close(self) -> None:
        try:
            self.xs.stop()
        finally:
            self.host.close()

    def __enter__(self) -> "Dom0":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- files ----------------------------------------------------------------

    def set_policy(self, text: str) -> None:
        with open(self.policy_path, "w", encoding="utf-8") as fh:
            fh.write(text)

    def hotplug_log(self) -> str:
        try:
            with open(os.path.join(self.tree, "var/log/xen/xen-hotplug.log")) as fh:
                return fh.read()
        except FileNotFoundError:
            return ""

    # -- running Xen's scripts as libxl does ----------------------------------

    def base_env(self) -> Dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "VIF_QOS_SYSLOG": "0", "LANG": "C",
               # vif-qos's host lock (vif_qos.kernel.alloc), per simulated dom0, not in /run.
               "VIF_QOS_RUN_DIR": os.path.join(self.tree, "run"),
               # overrides.conf (vif_qos.config.paths), per simulated dom0.
               "VIF_QOS_STATE_DIR": os.path.join(self.tree, "var", "lib", "vif-qos")}
        env.update(self.xs.env())
        return env

    def script_env(self, domid: int, devid: int, script: str = VIF_BRIDGE,
                   tap: bool = False) -> Dict[str, str]:
        """The environment libxl gives a vif script (libxl_linux.c)."""
        env = self.base_env()
        env.update({"script": script, "XENBUS_TYPE": "vif",
                    "XENBUS_PATH": f"backend/vif/{domid}/{devid}",
                    "XENBUS_BASE_PATH": "backend", "netdev": "",
                    "vif": f"vif{domid}.{devid}"})
        if tap:
            env["INTERFACE"] = f"vif{domid}.{devid}-emu"
        return env

    def run(self, argv: Sequence[str], env: Dict[str, str],
            timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``argv`` in dom0's network namespace with the private mounts."""
        env = dict(env, VQ_TREE=self.tree, VQ_NS=self.host.dom0)
        return subprocess.run(["unshare", "-m", "sh", "-c", _RUNNER, "sh", *argv], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def popen(self, argv: Sequence[str], env: Dict[str, str]) -> subprocess.Popen:
        env = dict(env, VQ_TREE=self.tree, VQ_NS=self.host.dom0)
        return subprocess.Popen(["unshare", "-m", "sh", "-c", _RUNNER, "sh", *argv], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    # -- vif-qos serve -----------------------------------------------------------

    def service_socket(self) -> str:
        """Where the hook looks for ``vif-qos serve`` (``$VIF_QOS_RUN_DIR/vif-qos.sock``)."""
        return os.path.join(self.tree, "run", "vif-qos.sock")

    def start_service(self, log_path: str, timeout_s: float = 60.0,
                      env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
        """Start ``vif-qos serve`` in dom0 (its namespace and private mounts, so it
        sees the policy and the hotplug log where the hook does), its output
        appended to ``log_path``, in a session of its own (killing ``-pid`` kills
        it and the requests it is handling, as systemd kills the unit's cgroup);
        return once its socket exists.

        :raises EnvironmentProblem: it exited or did not listen within ``timeout_s``.
        """
        os.makedirs(os.path.join(self.tree, "run"), mode=0o755, exist_ok=True)
        full = dict(self.base_env(), **(env or {}), VQ_TREE=self.tree, VQ_NS=self.host.dom0)
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(["unshare", "-m", "sh", "-c", _RUNNER, "sh",
                                     self.program, "serve"], env=full,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True)
        deadline = time.monotonic() + timeout_s
        run_dir = full["VIF_QOS_RUN_DIR"]
        while not os.path.exists(os.path.join(run_dir, "vif-qos.sock")):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop_service(proc)
                with open(log_path, errors="replace") as fh:
                    tail = fh.read()[-2000:]
                raise EnvironmentProblem(f"vif-qos serve did not start: {tail}")
            time.sleep(0.02)
        return proc

    def stop_service(self, proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the service's whole session and wait for it; remove its socket."""
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        try:
            os.unlink(self.service_socket())
        except FileNotFoundError:
            pass

    def hotplug(self, command: str, domid: int, devid: int = 0, script: str = VIF_BRIDGE,
                **extra: str) -> subprocess.CompletedProcess:
        """``SCRIPT online|offline type_if=vif`` or ``add|remove type_if=tap``.

        The vif's xenstore nodes are first put in the state libxl runs the script in
        (seen under real Xen 4.17): ``online`` after netback's probe (its feature
        keys, backend state 2), ``offline`` with the backend closed (``online`` 0,
        state 6, no ``hotplug-status``) and the frontend directory gone. Under libxl
        the netdev is also gone by ``offline``; the caller removes it (or not, to
        test a toolstack that does not).
        """
        tap = command in ("add", "remove")
        if command == "online" and self.xs.read(
                f"/local/domain/0/backend/vif/{domid}/{devid}/state") == "1":
            self.xs.netback_probe(domid, devid)
        elif command == "offline":
            self.xs.close_vif(domid, devid)
        env = self.script_env(domid, devid, script, tap=tap)
        env.update(extra)
        return self.run([script, command, f"type_if={'tap' if tap else 'vif'}"], env)

    def vif_qos(self, *args: str) -> subprocess.CompletedProcess:
        """Run the installed vif-qos program in dom0 (e.g. the udev rule's command)."""
        return self.run([self.program, *args], self.base_env())

    def udev_cleanup_command(self, name: str) -> List[str]:
        """The command 85-vif-qos.rules runs for a removed netdev ``name`` (%k)."""
        with open(os.path.join(self.tree, "etc/udev/rules.d/85-vif-qos.rules")) as fh:
            for line in fh:
                if line.startswith("SUBSYSTEM==\"net\"") and 'KERNEL=="vif*"' in line:
                    run = line.split('RUN+="', 1)[1].rsplit('"', 1)[0]
                    return run.replace("%k", name).split()
        raise EnvironmentProblem("no net remove rule in the installed 85-vif-qos.rules")
