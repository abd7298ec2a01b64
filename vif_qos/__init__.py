"""vif-qos: per-guest bandwidth shaping for Xen dom0 hosts.

Importing the package is cheap on purpose (it runs on every vif hotplug): the
netlink and nftables libraries are imported only by the modules that use them.
"""

__version__ = "0.1.0"
