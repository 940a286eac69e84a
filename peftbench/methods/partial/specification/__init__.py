"""Specification tuning: train a structurally chosen subset of the backbone's own parameters."""
