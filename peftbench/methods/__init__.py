"""PEFT methods by family; see :mod:`peftbench.methods.base` for the contract and the registry."""

from __future__ import annotations

from peftbench.methods.base import (
    MethodConfig,
    PeftMethod,
    PeftModule,
    available_methods,
    build_method,
    get_method_class,
    register_method,
)

__all__ = [
    "MethodConfig",
    "PeftMethod",
    "PeftModule",
    "available_methods",
    "build_method",
    "get_method_class",
    "register_method",
]
