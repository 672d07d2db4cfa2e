"""CoNLL-2003 named-entity tagging, fine-tuning the whole model: sequences of 128, AdamW at 5e-5, batch 32,
3 epochs, warmup over the first 10%, linear decay.

    bertjax finetune --config ner --workdir runs/ner \\
        --config.train.init_checkpoint=runs/base --config.ner.train_file=eng.train \\
        --config.ner.validation_file=eng.testa --config.ner.test_file=eng.testb --predict

Files are in the CoNLL format (a word per line, its tag in the last column, IOB1 or IOB2). The model and the
tokenizer come from `train.init_checkpoint`. The feature-based alternative (a frozen encoder) is
benchmarks/feature_tagging.py.
"""

from bertjax.configs import common


def get_config(arg: str | None = None):
    config = common.get_config()
    config.finetune.task = "ner"
    config.data.max_seq_length = 128
    config.optim.learning_rate = 5e-5
    config.optim.warmup_fraction = 0.1
    config.optim.weight_decay = 0.01
    config.finetune.num_epochs = 3.0
    config.train.global_batch_size = 32
    config.train.eval_batch_size = 64
    config.train.log_every = 50
    config.train.eval_every = 0
    config.train.checkpoint_every = 1000
    config.train.keep_checkpoints = 1
    return common.apply_arg(config, arg)
