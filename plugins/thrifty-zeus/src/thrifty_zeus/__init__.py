"""Zeus (``zeus`` on the package index, ``zeus.monitor.ZeusMonitor``) as a thrifty energy meter."""
