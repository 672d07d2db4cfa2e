"""Small GLUE folders in the original files' layouts (header rows, column sets, test files without labels),
with texts that carry their label so that a tiny model can learn them."""

import pathlib

POSITIVE = ["a good film", "great acting and a good story", "i loved it", "good fun", "a great and moving film"]
NEGATIVE = ["a bad film", "awful acting and a dull story", "i hated it", "bad and boring", "a dull and awful mess"]


def _write(path: pathlib.Path, rows: list[list[str]], header: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def sentiment(count: int, offset: int = 0) -> list[tuple[str, str]]:
    """(sentence, "0" or "1") pairs alternating negative and positive."""
    pairs = []
    for index in range(offset, offset + count):
        label = index % 2
        texts = POSITIVE if label else NEGATIVE
        pairs.append((f"{texts[index // 2 % len(texts)]} number {index}", str(label)))
    return pairs


def write_glue(root: pathlib.Path, train: int = 24, dev: int = 13, test: int = 7) -> pathlib.Path:
    """Every GLUE task's folder under `root`; `dev` is deliberately not a multiple of common batch sizes."""
    # CoLA: train/dev without a header (source, label, original mark, sentence); test with one.
    for split, count in (("train", train), ("dev", dev)):
        _write(root / "CoLA" / f"{split}.tsv",
               [["gj04", label, "" if label == "1" else "*", text] for text, label in sentiment(count)])
    _write(root / "CoLA" / "test.tsv", [[str(i), text] for i, (text, _) in enumerate(sentiment(test))],
           ["index", "sentence"])
    # SST-2: sentence, label; test: index, sentence.
    for split, count in (("train", train), ("dev", dev)):
        _write(root / "SST-2" / f"{split}.tsv", [list(pair) for pair in sentiment(count)], ["sentence", "label"])
    _write(root / "SST-2" / "test.tsv", [[str(i), text] for i, (text, _) in enumerate(sentiment(test))],
           ["index", "sentence"])
    # MRPC (the GLUE folder's layout): Quality, #1 ID, #2 ID, #1 String, #2 String.
    mrpc_header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    for split, count in (("train", train), ("dev", dev)):
        _write(root / "MRPC" / f"{split}.tsv",
               [[label, str(100 + i), str(200 + i), text, text if label == "1" else "something else entirely"]
                for i, (text, label) in enumerate(sentiment(count))], mrpc_header)
    _write(root / "MRPC" / "test.tsv", [[str(i), "1", "2", text, text] for i, (text, _) in enumerate(sentiment(test))],
           ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"])
    # STS-B: ten columns, the score last; test without the score.
    stsb_header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
    for split, count in (("train", train), ("dev", dev)):
        _write(root / "STS-B" / f"{split}.tsv",
               [[str(i), "main-news", "news", "2012", str(i), "none", "none", text, text, f"{float(label) * 4 + 0.5:.3f}"]
                for i, (text, label) in enumerate(sentiment(count))], stsb_header + ["score"])
    _write(root / "STS-B" / "test.tsv", [[str(i), "main-news", "news", "2012", str(i), "none", "none", text, text]
                                         for i, (text, _) in enumerate(sentiment(test))], stsb_header)
    # QQP: id, qid1, qid2, question1, question2, is_duplicate; test: id, question1, question2.
    for split, count in (("train", train), ("dev", dev)):
        _write(root / "QQP" / f"{split}.tsv", [[str(i), str(2 * i), str(2 * i + 1), text, text + "?", label]
                                              for i, (text, label) in enumerate(sentiment(count))],
               ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"])
    _write(root / "QQP" / "test.tsv", [[str(1000 + i), text, text] for i, (text, _) in enumerate(sentiment(test))],
           ["id", "question1", "question2"])
    # MNLI: 12 columns in train (label1, gold_label), 16 in dev (label1..label5, gold_label), 10 in test.
    base = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
            "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
    names = ["entailment", "neutral", "contradiction"]

    def mnli_rows(count, labels_per_row):
        rows = []
        for i, (text, _) in enumerate(sentiment(count)):
            gold = names[i % 3]
            rows.append([str(i), str(i), f"{i}e", "fiction", "( x )", "( y )", "(ROOT x)", "(ROOT y)", text,
                         f"{gold} {text}"] + [gold] * labels_per_row + [gold])
        return rows

    _write(root / "MNLI" / "train.tsv", mnli_rows(train, 1), base + ["label1", "gold_label"])
    dev_header = base + [f"label{i}" for i in range(1, 6)] + ["gold_label"]
    _write(root / "MNLI" / "dev_matched.tsv", mnli_rows(dev, 5), dev_header)
    _write(root / "MNLI" / "dev_mismatched.tsv", mnli_rows(dev - 2, 5), dev_header)
    for name in ("test_matched", "test_mismatched"):
        _write(root / "MNLI" / f"{name}.tsv", [row[:10] for row in mnli_rows(test, 0)], base)
    # QNLI and RTE: index, two texts, entailment / not_entailment; WNLI the same with 0 / 1.
    for folder, columns, labels in (("QNLI", ["question", "sentence"], ["not_entailment", "entailment"]),
                                    ("RTE", ["sentence1", "sentence2"], ["not_entailment", "entailment"]),
                                    ("WNLI", ["sentence1", "sentence2"], ["0", "1"])):
        for split, count in (("train", train), ("dev", dev)):
            _write(root / folder / f"{split}.tsv", [[str(i), text, text, labels[int(label)]]
                                                   for i, (text, label) in enumerate(sentiment(count))],
                   ["index", *columns, "label"])
        _write(root / folder / "test.tsv", [[str(i), text, text] for i, (text, _) in enumerate(sentiment(test))],
               ["index", *columns])
    # The diagnostic set (AX): index, sentence1, sentence2.
    _write(root / "diagnostic" / "diagnostic.tsv", [[str(i), text, text] for i, (text, _) in enumerate(sentiment(test))],
           ["index", "sentence1", "sentence2"])
    return root
