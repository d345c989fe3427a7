#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds the `tch` (libtorch, CUDA) and `cuda` (CubeCL)
# backends, checks them against the CPU (encoder outputs within 1e-4, five training steps
# within 1e-3: crates/mtl-train/tests/backends.rs), times embedding and fine-tuning on the GPU,
# and writes a short report (default gpu-report.md; REPORT=path to change it).
#
#   scripts/gpu-check.sh
#
# Needs: the Rust toolchain, an NVIDIA driver, and either network access (to create
# .cache/torch-venv with torch 2.9.0's CUDA wheel on first use) or that venv already in place.
# Without torch, only `cuda` is checked; the `cuda` backend needs the CUDA driver and NVRTC
# (libnvrtc, e.g. from the nvidia-cuda-nvrtc-cu12 wheel that torch installs).
# Budget: under 8 minutes on one H100 (most of it is the release build).
set -uo pipefail
cd "$(dirname "$0")/.."
report=${REPORT:-gpu-report.md}
started=$(date +%s)
log() { printf '%s\n' "$*" | tee -a "$report"; }
: > "$report"
log "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
log ""
log '```'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$report"
log '```'

backends=(cuda)
if [ -d .cache/torch-venv ] || python3 scripts/ensure_venv.py >/dev/null 2>&1; then
  backends=(tch cuda)
  venv=$(python3 scripts/ensure_venv.py)
  torch_lib=$(ls -d "$venv"/lib/python*/site-packages/torch/lib | head -n1)
  nvrtc=$(ls -d "$venv"/lib/python*/site-packages/nvidia/cuda_nvrtc/lib 2>/dev/null | head -n1)
  export LIBTORCH_USE_PYTORCH=1 PATH="$venv/bin:$PATH"
  export LD_LIBRARY_PATH="$torch_lib:${nvrtc:+$nvrtc:}${LD_LIBRARY_PATH:-}"
else
  log "torch 2.9.0 is not available here: the tch backend is not checked."
fi
features=$(IFS=,; echo "${backends[*]}")

cargo xtask fetch-model >/dev/null 2>&1 || { log "fetching the model failed"; exit 1; }
log ""
log "## Build (release, features $features)"
if ! cargo build --release -p mtl --features "$features" --bin mtl-bench 2>&1 | tail -n 3 | tee -a "$report"; then
  log "build failed"
  exit 1
fi

log ""
log "## Parity with the CPU backend"
log '```'
cargo test --release -p mtl-train --features "$features" --test backends -- --nocapture 2>&1 \
  | grep -E "differ|losses|test result|panicked" | tee -a "$report"
log '```'

log ""
log "## Throughput (one run each; 2,000 sentences; MiniLM-L6)"
corpus=.cache/bench/corpus.txt
if [ ! -f "$corpus" ]; then
  cargo xtask datasets >/dev/null 2>&1
  python3 - <<'PY'
import json, pathlib
lines = []
for name in ("bbc", "tweets"):
    with open(f"datasets/{name}/train.jsonl") as f:
        for _, line in zip(range(1000), f):
            lines.append(json.loads(line)["text"].replace("\n", " ").replace("\r", " "))
pathlib.Path(".cache/bench").mkdir(parents=True, exist_ok=True)
pathlib.Path(".cache/bench/corpus.txt").write_text("\n".join(lines) + "\n")
PY
fi
model=$(ls -d .cache/models/all-MiniLM-L6-v2)
log "| backend | measurement | batch | throughput | peak host RSS |"
log "|---|---|---|---|---|"
for backend in "${backends[@]}"; do
  for spec in "embed 32" "embed 128" "finetune 32"; do
    set -- $spec
    out=$(./target/release/mtl-bench "$1" --batch-size "$2" --corpus "$corpus" --model "$model" \
      --backend "$backend" --steps 30 2>/dev/null | tail -n1)
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(f"| {sys.argv[2]} | {r[\"measurement\"]} | {r[\"batch_size\"]} | {r[\"throughput\"]:.0f} /s | {r[\"peak_rss_mib\"]:.0f} MiB |")' \
      "$out" "$backend" 2>/dev/null | tee -a "$report" || log "| $backend | $1 | $2 | failed | |"
  done
done
log ""
log "Wall time: $(( $(date +%s) - started )) s"
echo "report written to $report"
