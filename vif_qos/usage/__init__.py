"""Usage recording and reporting: the SQLite store, record, report, plot, metrics,
auto-overage. May import base, core, config, kernel and xen."""
