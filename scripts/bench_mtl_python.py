#!/usr/bin/env python3
"""The Python package's side of `cargo xtask bench --with-python-package`: `mtl.SentenceEncoder
.encode` of the corpus from Python, one measurement per process, printed as one JSON line with
the same keys as `mtl-bench`.

    python3 scripts/bench_mtl_python.py embed --corpus FILE --model DIR --batch-size 32 \
        --module target/release/libmtl_py.so [--threads 2]

The extension module (built by xtask in release mode, as `mtl-bench`) is put with
crates/mtl-py/python/mtl into a temporary package directory and imported from there. As
`mtl-bench` does, the first 64 texts are embedded untimed first.
"""

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import _venv  # noqa: E402

_venv.ensure()


def import_mtl(module: Path, directory: Path):
    package = directory / "mtl"
    shutil.copytree(ROOT / "crates" / "mtl-py" / "python" / "mtl", package)
    shutil.copy(module, package / "_mtl.abi3.so")
    sys.path.insert(0, str(directory))
    import mtl

    return mtl


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("measurement", choices=["embed"])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--module", type=Path, required=True, help="the built extension module")
    parser.add_argument("--threads", type=int, default=None, help="compute threads (default: every core)")
    args = parser.parse_args()
    corpus = args.corpus.read_text().splitlines()
    with tempfile.TemporaryDirectory() as directory:
        mtl = import_mtl(args.module, Path(directory))
        if args.threads:
            mtl.set_num_threads(args.threads)
        model = mtl.SentenceEncoder(args.model)
        model.encode(corpus[:64], batch_size=args.batch_size)
        started = time.perf_counter()
        out = model.encode(corpus, batch_size=args.batch_size)
        seconds = time.perf_counter() - started
    print(json.dumps({
        "measurement": args.measurement,
        "batch_size": args.batch_size,
        "examples": len(out),
        "seconds": seconds,
        "throughput": len(out) / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": mtl.num_threads(),
    }))


if __name__ == "__main__":
    main()
