"""Xen's side: xenstore, the hotplug log, and the online/offline/add/remove runs."""
