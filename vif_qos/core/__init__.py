"""Pure functions and plain data: units, Xen's rate= form, the qos spec grammar,
netdev names, and resolution of a vif's plan. No file, socket or process I/O."""
