"""Partial-based PEFT methods (the survey's taxonomy); registered in :mod:`peftbench.methods.registry`."""
