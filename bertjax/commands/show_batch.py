"""Print the first examples of a pretraining batch as text, as the model will see them, with statistics.

    bertjax show_batch --config bert_tiny
    bertjax show_batch --config bert_tiny --config.data.packing=true --split validation
"""

import time

from absl import flags

from bertjax import cli

_CONFIG = cli.DEFINE_config()
_SPLIT = flags.DEFINE_enum("split", "train", ["train", "validation"], "Which split.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Examples per batch.", lower_bound=1)
_SHOW = flags.DEFINE_integer("show", 3, "Rows to print.", lower_bound=0)
_BATCHES = flags.DEFINE_integer("batches", 50, "Batches read for the statistics.", lower_bound=1)


def _render(tokens, vocabulary, mask, targets: dict[int, int]) -> str:
    """Real tokens as text; [MASK] and the other specials by name; <piece> where a prediction target was
    replaced by a random token or kept."""
    names = {vocabulary.cls_id: "[CLS]", vocabulary.sep_id: "[SEP]", vocabulary.mask_id: "[MASK]"}
    text = ""
    for position, token in enumerate(tokens.tolist()):
        if mask[position] == 0:
            continue
        piece = names.get(token) or vocabulary.decode([token])
        if position in targets and token not in names:
            piece = f"<{piece}>"
        text += (" " if token in names or vocabulary.word_start[token] or text.endswith("]") else "") + piece
    return text.strip()


def main(argv):
    del argv
    import numpy as np

    from bertjax.data import pipeline, shards, tokenizer

    config = _CONFIG.value
    vocabulary = tokenizer.load_tokenizer(shards.resolve_tokenizer(config.data), config.data.lowercase)
    train = _SPLIT.value == "train"
    dataset = pipeline.pretraining_dataset(config.data, vocabulary, _SPLIT.value, batch_size=_BATCH_SIZE.value,
                                           seed=config.seed, train=train)
    iterator = iter(dataset)
    first = next(iterator)
    for row in range(min(_SHOW.value, _BATCH_SIZE.value)):
        predicted = first["masked_weights"][row] > 0
        targets = dict(zip(first["masked_positions"][row][predicted].tolist(),
                           first["masked_ids"][row][predicted].tolist()))
        label = first.get("sentence_label")
        print(f"--- row {row}" + (f", sentence label {label[row].tolist()}" if label is not None else ""))
        print(_render(first["input_ids"][row], vocabulary, first["attention_mask"][row], targets))
        print("    targets: " + " ".join(vocabulary.decode([t]) for t in targets.values()))

    start, batches = time.perf_counter(), [first]
    for batch in iterator:
        batches.append(batch)
        if len(batches) == _BATCHES.value:
            break
    seconds = time.perf_counter() - start
    real = sum(int((batch["attention_mask"] > 0).sum()) for batch in batches)
    predictions = sum(float(batch["masked_weights"].sum()) for batch in batches)
    rows = len(batches) * _BATCH_SIZE.value
    print(f"{len(batches)} batches of {first['input_ids'].shape}: {real / rows:.1f} real tokens per row "
          f"({real / first['input_ids'].size / len(batches):.0%} of the row), {predictions / real:.1%} of them "
          f"predicted, {(len(batches) - 1) * _BATCH_SIZE.value / max(seconds, 1e-9):,.0f} rows/s")
    if "sentence_label" in first:
        weights = np.concatenate([batch["sentence_weights"].ravel() for batch in batches])
        labels = np.concatenate([batch["sentence_label"].ravel() for batch in batches])
        print(f"sentence task {config.data.sentence_task}: label 1 in {labels[weights > 0].mean():.1%} of examples")

