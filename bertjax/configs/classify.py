"""Fine-tuning on your own labelled files (`bertjax.tasks.classify`) with BERT's recipe: AdamW at 2e-5, batch 32,
3 epochs, warmup over the first 10%, linear decay, sequences of 128.

    bertjax finetune --config classify --workdir runs/spam \\
        --config.train.init_checkpoint=runs/base --config.classify.train_file=train.csv \\
        --config.classify.validation_file=dev.csv --config.classify.test_file=test.csv \\
        --config.classify.text_a_column=text --predict

Files are CSV, TSV, JSON lines or Parquet (told by the name). Pairs: set classify.text_b_column. A score per row:
classify.problem_type=regression; several labels per row: multi_label_classification (a JSON list, or names
joined by classify.label_separator). The model and tokenizer come from `train.init_checkpoint`.
"""

from bertjax.configs import common, glue


def get_config(arg: str | None = None):
    config = glue.get_config()  # GLUE's recipe
    config.unlock()
    config.finetune.task = "classify"
    return common.apply_arg(config, arg)
