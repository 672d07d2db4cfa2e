"""Input-pipeline throughput on one CPU core, and preparation speed and memory.

    python benchmarks/data_throughput.py [--batches 200] [--scales 1,8]

1. Trains a tokenizer on the built-in corpus and prepares it (in a temporary directory).
2. Examples per second through pairing, masking and batching at sequence length 128 (and 512), in the
   main process (num_workers=0: one core), for each sentence task, whole-word masking and packing.
3. Preparation of the built-in corpus written out k times (k from --scales) in each corpus format (from
   --formats: BERT-format text, one-document-per-line text, JSON lines plain and gzip, CSV, Parquet, a saved
   HF dataset): MB of text per second (the documents' characters, whatever the file's overhead), the file's
   MB per second, and the peak memory of one process, which must not grow with k. Each corpus file and its
   shards are deleted once measured, so the disk holds one corpus at a time.

    python benchmarks/data_throughput.py --batches 0 --scales 1,64 --formats text,jsonl,parquet
"""

import argparse
import csv
import gzip
import itertools
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

from bertjax.data import corpus, pipeline, shards, tokenizer
from bertjax.configs import common

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
    parser.add_argument("--formats", default="text,paragraphs,jsonl,jsonl.gz,csv,parquet,hf")
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bertjax-bench-"))
    documents = list(corpus.read_builtin())
    model = work / "tokenizer.model"
    tokenizer.train_sentencepiece(itertools.chain.from_iterable(documents), 8192).save(model)
    vocabulary = tokenizer.load_tokenizer(model)
    shards.prepare(iter(documents), model, work / "data", num_workers=2)

    if args.batches:  # 0: preparation only
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
    print(f"  {'format':<10} {'k':>4} {'text MB':>8} {'file MB':>8} {'text MB/s':>10} {'file MB/s':>10} "
          f"{'peak memory':>12}")
    for scale in map(int, args.scales.split(",")):
        for name in args.formats.split(","):
            spec, path = write_corpus(name, documents, scale, work / f"corpus-{name}-x{scale}")
            output = work / f"prepared-{name}-x{scale}"
            result = subprocess.run(
                [sys.executable, str(ROOT / "tools/prepare_data.py"), f"--corpus={spec}", f"--tokenizer={model}",
                 f"--output_dir={output}"], capture_output=True, text=True, check=True, cwd=ROOT)
            summary = re.search(r"in ([\d.]+)s \(([\d.]+) MB of text/s, peak memory of one process (\d+) MB\)",
                                result.stdout)
            seconds, text_rate, peak = float(summary.group(1)), float(summary.group(2)), summary.group(3)
            file_mb = sum(file.stat().st_size for file in ([path] if path.is_file() else path.rglob("*"))) / 1e6
            print(f"  {name:<10} {scale:>4} {text_rate * seconds:>8.1f} {file_mb:>8.1f} {text_rate:>10.2f} "
                  f"{file_mb / seconds:>10.2f} {peak:>9} MB", flush=True)
            shutil.rmtree(output)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(work)


def write_corpus(name: str, documents, scale: int, stem: pathlib.Path) -> tuple[str, pathlib.Path]:
    """The documents written `scale` times in one corpus format, streaming; its --corpus spec and path."""
    repeated = (document for _ in range(scale) for document in documents)
    texts = ("\n".join(document) for document in repeated)  # a record's lines are its sentences
    if name == "text":
        path = stem.with_suffix(".txt")
        with open(path, "w") as file:
            file.writelines("\n".join(document) + "\n\n" for document in repeated)
        return f"text:{path}", path
    if name == "paragraphs":
        path = stem.with_suffix(".txt")
        with open(path, "w") as file:
            file.writelines(" ".join(document) + "\n" for document in repeated)
        return f"paragraphs:{path}", path
    if name in ("jsonl", "jsonl.gz"):
        path = stem.with_suffix("." + name)
        with (gzip.open(path, "wt", compresslevel=6) if name.endswith(".gz") else open(path, "w")) as file:
            file.writelines(json.dumps({"text": text}) + "\n" for text in texts)
        return f"jsonl:{path}", path
    if name == "csv":
        path = stem.with_suffix(".csv")
        with open(path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["text"])
            writer.writerows([text] for text in texts)
        return f"csv:{path}:text", path
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("text", pa.string())])
    batches = (pa.record_batch([pa.array(chunk, pa.string())], schema=schema)
               for chunk in iter(lambda: list(itertools.islice(texts, 1000)), []))
    if name == "parquet":
        path = stem.with_suffix(".parquet")
        with pq.ParquetWriter(path, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
        return f"parquet:{path}", path
    if name == "hf":  # the layout of datasets' save_to_disk: Arrow stream batches of 1,000 rows, state.json
        stem.mkdir()
        with pa.OSFile(str(stem / "data-00000-of-00001.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, schema) as writer:
                for batch in batches:
                    writer.write_batch(batch)
        (stem / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
        return f"hf:{stem}", stem
    raise ValueError(f"unknown format {name!r}")

if __name__ == "__main__":
    main()
