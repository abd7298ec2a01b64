"""The simulated dom0 (network namespaces, a xenstored double, Xen's real scripts):
``vif-qos simulate``, and the harness the tests and benchmarks build on."""
