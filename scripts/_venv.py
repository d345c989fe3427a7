"""Runs the calling script inside the project's PyTorch virtual environment.

The environment lives in `.cache/torch-venv` (git-ignored). It is created and filled from
`scripts/requirements.txt` on first use (about 8 GB, half of it torch's CUDA libraries, which
PyPI's Linux torch wheel requires even on a CPU; a few minutes);
later runs reuse it. Set MTL_TORCH_VENV to use another directory.
"""

import fcntl
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "scripts" / "requirements.txt"
VENV = Path(os.environ.get("MTL_TORCH_VENV", ROOT / ".cache" / "torch-venv"))


def _python() -> Path:
    return VENV / "bin" / "python"


def _stamp() -> Path:
    return VENV / ".requirements.txt"


def ensure() -> None:
    """Re-executes the current script with the venv's interpreter, creating the venv if needed."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    wanted = REQUIREMENTS.read_text()
    VENV.parent.mkdir(parents=True, exist_ok=True)
    # One process fills the environment; another one started meanwhile waits for it.
    with open(VENV.parent / f".{VENV.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _python().exists() or not _stamp().exists() or _stamp().read_text() != wanted:
            print(f"setting up {VENV} from {REQUIREMENTS} (first run only)", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            # --no-cache-dir: the environment is the one copy kept; pip's cache would keep a
            # second one of every wheel (several GB) in the user's home.
            pip = [str(_python()), "-m", "pip", "install", "--quiet", "--no-cache-dir"]
            pip.append("--disable-pip-version-check")
            subprocess.run(pip + ["-r", str(REQUIREMENTS)], check=True)
            _stamp().write_text(wanted)
    os.execv(str(_python()), [str(_python()), *sys.argv])
