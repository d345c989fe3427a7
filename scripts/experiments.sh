#!/usr/bin/env bash
# Reproduces the tables of docs/RESULTS.md, after `cargo xtask train` has written runs/default:
# the PyTorch twin of the default run, single-task runs, frozen-encoder runs, a learning-rate
# comparison, and the sentiment head on out-of-domain data. About 90 minutes on 2 cores;
# results land in runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p mtl
mtl=target/release/mtl
[ -f runs/default/summary.json ] || { echo "run \`cargo xtask train\` first" >&2; exit 1; }

# The same batches, heads and hyper-parameters in PyTorch (transformers).
python3 scripts/train_pytorch.py runs/default

# Each task alone, with as many batches of it as the multi-task run had (53 and 52 per epoch).
$mtl train --output runs/topic-only --overwrite --task topic=bbc
$mtl train --output runs/sentiment-only --overwrite --task sentiment=tweets --epoch steps:52

# Both tasks, encoder frozen (its embeddings cached once; only the heads train), with the
# default learning rates, then with the heads' learning rate and epochs raised.
$mtl train --output runs/frozen --overwrite --freeze encoder
$mtl train --output runs/frozen-tuned --overwrite --freeze encoder --head-lr 1e-2 --epochs 40

# The default run with the usual BERT fine-tuning rate for the encoder.
$mtl train --output runs/lr-2e-5 --overwrite --encoder-lr 2e-5

# The multi-task sentiment head on 2-class data it never saw (predictions among the data's labels).
for data in amazon polarity; do
  $mtl eval --model runs/default/best --task sentiment --data sentiment=$data --restrict-labels --json \
    > runs/default/eval-sentiment-$data.json
done
echo "done: runs/{default/pytorch,topic-only,sentiment-only,frozen,frozen-tuned,lr-2e-5}/summary.json"
