"""Prompt tuning: learned tokens prepended to the input or to every layer's tokens."""
