"""A loaded configuration compiled into per-workload Snapshots (compile), what their
decisions read (inputs), and the generation now serving (store)."""
