"""The same texts written in every record format the corpus readers take, each by the library people write it
with (json, gzip, pyarrow, csv, HF datasets)."""

import csv
import gzip
import json


def write_records(directory, texts, column="text"):
    """The texts in every record format, each written by the library users write it with; their specs."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    extra = list(range(len(texts)))
    with open(directory / "c.jsonl", "w") as file:
        file.writelines(json.dumps({"id": i, column: text}) + "\n" for i, text in zip(extra, texts))
    with gzip.open(directory / "c.jsonl.gz", "wt") as file:
        file.writelines(json.dumps({column: text}) + "\n" for text in texts)
    with pa.CompressedOutputStream(str(directory / "c.jsonl.zst"), "zstd") as file:
        file.write("".join(json.dumps({column: text}) + "\n" for text in texts).encode())
    for name, delimiter in (("c.csv", ","), ("c.tsv", "\t")):
        with open(directory / name, "w", newline="") as file:
            writer = csv.writer(file, delimiter=delimiter)
            writer.writerow(["id", column])
            writer.writerows(zip(extra, texts))
    pq.write_table(pa.table({"id": extra, column: texts}), directory / "c.parquet", row_group_size=2)
    datasets.disable_progress_bars()
    dataset = datasets.Dataset.from_dict({"id": extra, column: texts})
    dataset.save_to_disk(str(directory / "dataset"))
    datasets.DatasetDict({"train": dataset, "test": dataset.select([1])}).save_to_disk(str(directory / "dict"))
    suffix = "" if column == "text" else f":{column}"
    return {"jsonl": f"jsonl:{directory}/c.jsonl{suffix}", "jsonl.gz": f"jsonl:{directory}/c.jsonl.gz{suffix}",
            "jsonl.zst": f"jsonl:{directory}/c.jsonl.zst{suffix}", "csv": f"csv:{directory}/c.csv:{column}",
            "tsv": f"tsv:{directory}/c.tsv:{column}", "parquet": f"parquet:{directory}/c.parquet{suffix}",
            "hf": f"hf:{directory}/dataset{suffix}", "hf dict": f"hf:{directory}/dict:train{suffix}"}
