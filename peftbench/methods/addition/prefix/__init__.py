"""Prefix tuning: learned key/value prefixes in the attention layers."""
