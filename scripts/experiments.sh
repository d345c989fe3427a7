#!/usr/bin/env bash
# Reproduces the tables of docs/RESULTS.md, after `cargo xtask train` has written runs/default:
# the PyTorch twin of the default run, single-task runs, frozen-encoder runs, a learning-rate
# comparison, and the sentiment head on out-of-domain data. About 90 minutes on 2 cores;
# results land in runs/.
#
# `scripts/experiments.sh transfer` runs only the transfer-learning tables (freezing strategies,
# one head frozen, adding a task with --init): 12 runs of 2 epochs each into runs/transfer/,
# about an hour on 2 cores, then prints the tables (scripts/transfer_tables.py).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p mtl
mtl=target/release/mtl

if [ "${1:-}" = transfer ]; then
  out=runs/transfer
  mkdir -p $out
  epochs=(--epochs 2)
  # Every model scored on the test split of every task it has (data given for each: a model
  # made with --init has tasks its own run did not train).
  score() {
    local model=$1 tasks data=()
    tasks=$(python3 -c 'import json,sys; print(" ".join(t["name"] for t in json.load(open(sys.argv[1]))["tasks"]))' "$model/mtl.json")
    for task in $tasks; do
      case $task in topic) data+=(--data topic=bbc) ;; sentiment) data+=(--data sentiment=tweets) ;; polarity) data+=(--data polarity=polarity) ;; esac
    done
    $mtl eval --model "$model" "${data[@]}" --json > "$model/../test.json"
  }
  train() {
    local name=$1
    shift
    $mtl train --output $out/$name --overwrite "${epochs[@]}" "$@"
    score $out/$name/best
  }
  # 1. What to freeze: both tasks, the default settings but 2 epochs, one switch per run.
  train full
  train freeze-embeddings --freeze embeddings
  train freeze-layers-3 --freeze layers:3
  train freeze-encoder --freeze encoder
  train gradual --unfreeze-every 1
  train layer-lr-0.9 --layer-lr-decay 0.9
  # 2. One head frozen: topic alone, then sentiment added with the topic head kept as it is
  # (sentiment gets 52 batches an epoch, as in the joint run): alone (the topic head is carried,
  # the encoder moves), alone on a frozen encoder, and with topic's batches still in the mix
  # (its frozen head's loss keeps pulling the encoder).
  train topic --task topic=bbc
  train topic+sentiment --init $out/topic/best --task sentiment=tweets --epoch steps:52
  train topic+sentiment-frozen --init $out/topic/best --task sentiment=tweets --epoch steps:52 --freeze encoder
  train topic+sentiment-joint --init $out/topic/best --task topic=bbc --task sentiment=tweets --freeze head:topic
  # 3. A third task (Pang & Lee polarity) added to the joint model, encoder free or frozen.
  train full+polarity --init $out/full/best --task polarity=polarity
  train full+polarity-frozen --init $out/full/best --task polarity=polarity --freeze encoder
  python3 scripts/transfer_tables.py $out
  exit
fi

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
