"""The embedded mini-benchmark from a checkout: ``peftbench-embedded`` run from the repository root (where its
default folders, data/ and results/embedded_benchmark/, are). Options: ``--help``."""

import os
import sys
from pathlib import Path

from peftbench.cli.embedded import main

if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent.parent)
    sys.exit(main())
