"""``vif-qos cleanup [--vif NAME] [--config FILE]``: remove the shaping of vifs whose
netdev is gone.

Run by udev (``udev/85-vif-qos.rules``) when a guest netdev or a netback backend
device is removed, because Xen does not guarantee an ``offline`` run (``xl destroy``
with a backend that does not close in time, ``on_*=preserve``, a killed xl monitor
or a dom0 crash skip it). Also safe to run by hand or from cron at any time.

- ``--vif NAME``: remove what vif-qos applied for NAME, unless a netdev called NAME
  exists again in this network namespace (a rebooted guest that kept its
  ``vifname`` and is already shaped anew: its new shaping is left alone).
- no option: remove every vif-qos leaf, map element and qdisc whose netdev is gone
  (:func:`vif_qos.kernel.apply.cleanup_orphans`).

``--config FILE`` names the policy file (its ``[host]`` settings; a broken one is
logged and the built-in settings used); ``--conf FILE``, the older spelling, is
still accepted with a warning on stderr.

Exit status 0 whenever the cleanup ran (what it removed is printed, one name a
line); 1 when the kernel refused a removal.
"""

from __future__ import annotations

import os
from typing import Optional

from vif_qos.cli import add_config_option
from vif_qos.errors import one_line
from vif_qos.kernel.netdev import netdev_exists
from vif_qos.xen.hotlog import HotplugLog, library_log_to
from vif_qos.xen.services import Services, default_services
from vif_qos.core.ifname import check_ifname


def configure(parser, name) -> None:
    parser.add_argument("--vif", metavar="NAME",
                        help="only this netdev name (udev passes %%k); skipped if the "
                             "netdev exists")
    add_config_option(parser)


def _host_settings(conf, log, services: Services):
    try:
        return services.load_policy(conf).host
    except Exception as err:  # a broken policy must not stop a cleanup
        log.warning(f"policy not loaded ({one_line(err)}); cleaning up with built-in settings")
        return None


def run(args, services: Optional[Services] = None) -> int:
    """Remove the shaping of ``args.vif`` (unless its netdev exists) or every
    orphan; print each name removed.

    :param services: the policy and kernel entry points (default the real ones,
        :func:`vif_qos.xen.services.default_services`).
    :raises InputError: ``--vif`` is a name no netdev can have (exit 2).
    """
    if args.vif is not None:
        # udev's %k is always valid; a hand-typed name no netdev can have is refused
        # here rather than by the kernel (ERANGE) or if_nametoindex (ValueError).
        check_ifname(args.vif, "--vif", "vif")
    conf = args.config or os.environ.get("VIF_QOS_CONFIG") or None
    log = HotplugLog(context=f"cleanup {args.vif}" if args.vif else "cleanup")
    services = services or default_services(os.environ)
    if args.vif is not None and services.may_hold is not None \
            and not services.may_hold(args.vif):
        # Nothing was applied under this name since boot: no policy read, no
        # netlink libraries loaded (vif_qos.kernel.ledger).
        log.debug(f"{args.vif} holds nothing of vif-qos: nothing to clean up")
        return 0
    with library_log_to(log):
        return _run(args, conf, log, services)


def _run(args, conf, log, services: Services) -> int:
    host = _host_settings(conf, log, services)
    if args.vif:
        if netdev_exists(args.vif):
            log.debug(f"netdev {args.vif} exists: nothing to clean up")
            return 0
        # The netdev is looked for under the host lock: a new guest's online for
        # the same name (a reboot keeping its vifname) may hold it right now, and
        # its fresh shaping must not be taken for the old guest's leftovers.
        # remove_vif looks for the netdev under the host lock (only_if_gone): a new
        # guest's online for the same name (a reboot keeping its vifname) may hold
        # it right now, and its fresh shaping is not the old guest's leftovers.
        removed = services.remove_vif(args.vif, host=host, only_if_gone=True)
        if removed:
            # On a real Xen host netback frees the netdev before libxl runs
            # offline: this is the normal teardown, not a leftover.
            log.info("netdev gone: its shaping removed")
            print(args.vif)
        else:
            log.debug("netdev gone: nothing of vif-qos held for it")
        return 0
    removed = services.cleanup_orphans(host=host)
    for name in removed:
        log.info(f"removed {name}: nothing of it is alive any more")
        print(name)
    return 0
