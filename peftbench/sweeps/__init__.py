"""Sweeps: expanding Hydra multiruns without running them, local launchers, the tune -> final search."""
