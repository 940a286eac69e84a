"""Reparameter tuning: low-rank or structured updates of the backbone's weights that merge away after training."""
