#!/usr/bin/env python3
"""Creates the PyTorch reference environment (`.cache/torch-venv`, see `_venv.py`) if it is
missing, then prints its directory. `cargo xtask` uses it to build the `tch` backend against
the torch 2.9.0 wheel (`LIBTORCH_USE_PYTORCH=1`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _venv  # noqa: E402

_venv.ensure()
print(sys.prefix)
