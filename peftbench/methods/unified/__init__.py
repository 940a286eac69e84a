"""Unified-based PEFT methods (the survey's taxonomy).

Importing this package imports every module below it, which registers their methods; adding a method
is one module here plus one YAML in configs/method/.
"""

from __future__ import annotations

from peftbench.methods.base import import_submodules

import_submodules(__name__, __path__)
