"""Input-pipeline throughput on one CPU core, and preparation speed and memory.

    python benchmarks/data_throughput.py [--batches 200] [--scales 1,8]

1. Trains a tokenizer on the built-in corpus and prepares it (in a temporary directory).
2. Examples per second through pairing, masking and batching at sequence length 128 (and 512), in the
   main process (num_workers=0: one core), for each sentence task, whole-word masking and packing.
3. Preparation of the built-in corpus written out k times as BERT-format text (k from --scales): MB of
   raw text per second and the peak memory of one process, which must not grow with k.
"""

import argparse
import itertools
import pathlib
import re
import subprocess
import sys
import tempfile
import time

from bertjax.data import corpus, pipeline, shards, tokenizer
from configs import common

ROOT = pathlib.Path(__file__).resolve().parents[1]


def pipeline_rate(data, vocabulary, batches: int) -> tuple[float, float]:
    iterator = iter(pipeline.pretraining_dataset(data, vocabulary, "train", batch_size=32, seed=0))
    for _ in range(5):
        next(iterator)  # warm-up
    examples, start = 0, time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
        examples += int(batch["sentence_weights"].sum()) if "sentence_weights" in batch else len(batch["input_ids"])
    seconds = time.perf_counter() - start
    return examples / seconds, batches * 32 / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--scales", default="1,8")
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bertjax-bench-"))
    documents = list(corpus.read_builtin())
    model = work / "tokenizer.model"
    tokenizer.train_sentencepiece(itertools.chain.from_iterable(documents), 8192).save(model)
    vocabulary = tokenizer.load_tokenizer(model)
    shards.prepare(iter(documents), model, work / "data", num_workers=2)

    print("pipeline, one core, batches of 32 (examples/s; rows/s where packing puts several in a row)")
    cases = [
        ("nsp, L=128", {}),
        ("sop, L=128", {"sentence_task": "sop"}),
        ("none, L=128", {"sentence_task": "none"}),
        ("nsp, L=128, whole-word masking", {"whole_word_masking": True}),
        ("nsp, L=128, packing", {"packing": True}),
        ("nsp, L=512, P=80", {"max_seq_length": 512, "max_predictions_per_seq": 80}),
    ]
    for name, overrides in cases:
        data = common.get_config().data
        data.tokenizer, data.prepared_dir = str(model), str(work / "data")
        for key, value in overrides.items():
            data[key] = value
        examples, rows = pipeline_rate(data, vocabulary, args.batches)
        print(f"  {name:<34} {examples:>9,.0f} examples/s  {rows:>9,.0f} rows/s")

    print("preparation of the built-in corpus written k times (2 tokenizing workers)")
    text = "\n\n".join("\n".join(document) for document in documents) + "\n\n"
    for scale in map(int, args.scales.split(",")):
        corpus_file = work / f"corpus-x{scale}.txt"
        corpus_file.write_text(text * scale)
        result = subprocess.run(
            [sys.executable, str(ROOT / "tools/prepare_data.py"), f"--corpus=text:{corpus_file}",
             f"--tokenizer={model}", f"--output_dir={work / f'prepared-x{scale}'}"],
            capture_output=True, text=True, check=True, cwd=ROOT)
        summary = re.search(r"\(([\d.]+) MB of text/s, peak memory of one process (\d+) MB\)", result.stdout)
        megabytes = corpus_file.stat().st_size / 1e6
        print(f"  x{scale:<3} {megabytes:7.1f} MB of text: {summary.group(1)} MB/s, peak memory {summary.group(2)} MB")


if __name__ == "__main__":
    main()
