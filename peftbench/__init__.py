"""peftbench: a harness for fair comparisons of parameter-efficient fine-tuning on vision backbones."""

from __future__ import annotations

__version__ = "0.1.0"
