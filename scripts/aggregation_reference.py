#!/usr/bin/env python3
"""TorchJD's gradient aggregators on fixed gradients: the reference for ours.

Reads JSON from standard input, `{"cases": [{"gradients": [[...], ...], "c": 0.5}, ...]}`
(each case one row per task: the tasks' gradients on the shared parameters), and writes, for
each case, the update vector (`J^T w`, float64) of each aggregator TorchJD 0.18.0 has and the
tasks' count allows:

- `upgrad`: `UPGrad()` (mean preference, quadprog projector, TorchJD's default `norm_eps` and
  `reg_eps` of 1e-4);
- `imtl_g`: `IMTLG()`;
- `cagrad`: `CAGrad(c)` (Clarabel through cvxpy), with Clarabel's tolerances tightened from
  1e-8 to 1e-12 (`_tight_solve`): at its defaults, the first case's update (two conflicting
  gradients of norm about 1) stopped 1.0e-6 from the optimum, which a one-dimensional search
  finds within 4e-8 of ours. TorchJD leaves out the official implementation's division by
  `1 + c^2` (LibMTL's `rescale = 1`, ours);
- `pcgrad`: `PCGrad()`, for two tasks only: with more, TorchJD projects in a random order of
  its own (`torch.randperm`), which nothing outside it reproduces.

MGDA is left out: TorchJD's Frank-Wolfe stops at a tolerance of 1e-3, so it is no reference
at 1e-6. Run with the reference environment's interpreter (`scripts/_venv.py`);
crates/mtl-train/tests/integration/aggregation_reference.rs does, and compares ours with it.
"""

import json
from importlib.metadata import version
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _venv  # noqa: E402

_venv.ensure()

import torch  # noqa: E402
from torchjd.aggregation import CAGrad, IMTLG, PCGrad, UPGrad  # noqa: E402
import cvxpy  # noqa: E402

_solve = cvxpy.Problem.solve


def _tight_solve(problem, *args, **kwargs):
    """cvxpy's `Problem.solve` with Clarabel's stopping tolerances at 1e-12 (TorchJD's CAGrad
    calls it with the solver's defaults, 1e-8)."""
    for setting in ("tol_gap_abs", "tol_gap_rel", "tol_feas", "tol_ktratio"):
        kwargs.setdefault(setting, 1e-12)
    return _solve(problem, *args, **kwargs)


cvxpy.Problem.solve = _tight_solve


def updates(gradients: list[list[float]], c: float) -> dict[str, list[float]]:
    matrix = torch.tensor(gradients, dtype=torch.float64)
    aggregators = {"upgrad": UPGrad(), "imtl_g": IMTLG(), "cagrad": CAGrad(c=c)}
    if matrix.shape[0] == 2:
        aggregators["pcgrad"] = PCGrad()
    return {name: aggregator(matrix).tolist() for name, aggregator in aggregators.items()}


def main() -> None:
    request = json.load(sys.stdin)
    answers = [updates(case["gradients"], case["c"]) for case in request["cases"]]
    json.dump({"torchjd": version("torchjd"), "cases": answers}, sys.stdout)


if __name__ == "__main__":
    main()
