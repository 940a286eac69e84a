"""Adapter tuning: small bottleneck modules added in series or in parallel to the backbone's blocks."""
