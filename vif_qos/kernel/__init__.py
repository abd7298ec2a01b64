"""The only code that talks to the kernel: tc over rtnetlink (pyroute2), the
nftables table (its JSON API), the host lock and allocation, apply/remove/status."""
