"""Predict with a fine-tuned run (or an HF folder) on raw text: one JSON line per input row, in order.

    bertjax predict --checkpoint runs/sst2 --input reviews.txt --output_dir predictions/sst2
    bertjax predict --checkpoint runs/mnli --input pairs.csv --text_column premise \\
        --text_b_column hypothesis --output_dir predictions/mnli
    bertjax predict --checkpoint runs/ner --input sentences.txt --output_dir predictions/ner
    bertjax predict --checkpoint runs/squad --input questions.jsonl --output_dir predictions/squad

--input is a text file (one example per line: classification, tagging) or CSV, TSV, JSON lines or Parquet
with the task's columns (default: the run's classify.text_a_column and text_b_column, else `text`;
`question` and `context`). --output_dir gets predictions.jsonl:

    classification   {"label", "probability", "probabilities": {label: p}}; regression {"score"};
                     multi-label {"labels", "probabilities"}
    tagging          {"words": [{"word", "tag", "start", "end"}], "entities": [{"type", "text", "start", "end"}]}
    span             {"answer", "start", "end", "score"} (v2.0 adds "null_odds"; a null answer is "")

Offsets are character offsets into the input text (the context for spans). Rows stream through in groups of
--batch_size: memory holds one group whatever the size of the input.
"""

import json
import pathlib
import time

from absl import flags

from bertjax import cli

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A fine-tuned run (its best/ when it has one), a step "
                                  "directory, an HF folder or a Hub id in the local HF cache.")
_INPUT = flags.DEFINE_string("input", None, "A text file (one example per line), or .csv/.tsv/.jsonl/.parquet.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "The directory to write predictions.jsonl into.")
_TEXT_COLUMN = flags.DEFINE_string("text_column", None, "The text's column (default: the run's, else text).")
_TEXT_B_COLUMN = flags.DEFINE_string("text_b_column", None, "The second text's column, for sentence pairs.")
_QUESTION_COLUMN = flags.DEFINE_string("question_column", None, "The question's column (default: question).")
_CONTEXT_COLUMN = flags.DEFINE_string("context_column", None, "The context's column (default: context).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Rows per forward pass.", lower_bound=1)
_MAX_SEQ_LENGTH = flags.DEFINE_integer("max_seq_length", None, "Row length (default: the run's).", lower_bound=3)
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "The run's tokenizer, where its config.json path has moved.")
flags.mark_flags_as_required(["checkpoint", "input", "output_dir"])


def main(argv):
    del argv
    import bertjax
    from bertjax import files
    from bertjax import predictor as predictors

    start = time.perf_counter()
    predictor = bertjax.load(_CHECKPOINT.value, batch_size=_BATCH_SIZE.value, max_seq_length=_MAX_SEQ_LENGTH.value,
                             tokenizer=_TOKENIZER.value)
    fields = predictors.input_fields(predictor, _TEXT_COLUMN.value, _TEXT_B_COLUMN.value, _QUESTION_COLUMN.value,
                                     _CONTEXT_COLUMN.value)
    rows = predictors.read_inputs(_INPUT.value, fields)
    output = pathlib.Path(_OUTPUT_DIR.value) / "predictions.jsonl"
    output.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with files.replacing(output) as partial, partial.open("w", encoding="utf-8") as lines:
        for prediction in predictor.stream(rows):
            lines.write(json.dumps(prediction, ensure_ascii=False) + "\n")
            count += 1
    print(f"{output}: {count:,} predictions ({predictor.head}), {time.perf_counter() - start:.1f}s; "
          f"peak host memory {cli.peak_memory_mb():,.0f} MB")

