#!/usr/bin/env python3
"""Embeds a corpus with mtl on Ray Data: reads Parquet or JSON lines, embeds the text column
with N actors (each loads the model once), writes Parquet (the input columns plus
`embedding`, float32 lists).

On one machine (starts a local Ray):
    python examples/ray_embed.py corpus.jsonl embeddings/ --actors 2 --threads 1

On a cluster (`ray start --head` on one node, `ray start --address HEAD:6379` on the others;
the model directory and the paths must be readable on every node, e.g. shared storage or
s3://...):
    python examples/ray_embed.py s3://bucket/corpus/ s3://bucket/embeddings/ \
        --address auto --actors 16 --threads 4 --model /shared/models/my-model
"""

import argparse
import time

import ray

from mtl.ray import Embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="Parquet file or directory, or JSON lines (.jsonl/.json)")
    parser.add_argument("output", help="directory to write Parquet files into")
    parser.add_argument("--column", default="text", help="the text column (default: text)")
    parser.add_argument("--model", default="default", help="model directory, hub id or 'default'")
    parser.add_argument("--actors", type=int, default=2, help="embedding actors (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="compute threads per actor (default: 1)")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default: 32)")
    parser.add_argument("--block-rows", type=int, default=1024, help="texts per Ray batch (default: 1024)")
    parser.add_argument("--quantize", choices=["int8"], help="int8 linear layers (flex)")
    parser.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    parser.add_argument("--address", help="Ray cluster address ('auto' on a cluster node); default: a local Ray")
    args = parser.parse_args()

    ray.init(address=args.address)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    if args.input.endswith((".jsonl", ".json")):
        dataset = ray.data.read_json(args.input, lines=True)
    else:
        dataset = ray.data.read_parquet(args.input)
    started = time.perf_counter()
    embedded = dataset.map_batches(
        Embedder,
        fn_constructor_kwargs={
            "model": args.model,
            "column": args.column,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "quantize": args.quantize,
            "normalize_embeddings": args.normalize,
        },
        compute=ray.data.ActorPoolStrategy(size=args.actors),
        num_cpus=args.threads,
        batch_size=args.block_rows,
        batch_format="numpy",
    )
    embedded.write_parquet(args.output)
    rows = ray.data.read_parquet(args.output).count()
    seconds = time.perf_counter() - started
    print(f"embedded {rows} texts in {seconds:.1f} s ({rows / seconds:.0f} texts/s) into {args.output}")


if __name__ == "__main__":
    main()
