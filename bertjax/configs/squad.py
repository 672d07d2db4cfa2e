"""SQuAD fine-tuning with the BERT paper's recipe: sequences of 384 in windows every 128 tokens, AdamW at
5e-5, warmup over the first 10%, linear decay; v1.1: 3 epochs at batch 32; v2.0: 2 epochs at batch 48.

    bertjax finetune --config squad --workdir runs/squad \\
        --config.train.init_checkpoint=runs/base \\
        --config.squad.train_file=train-v1.1.json --config.squad.validation_file=dev-v1.1.json --predict
    bertjax finetune --config squad:v2 ... (train-v2.0.json, dev-v2.0.json)

The model and the tokenizer come from `train.init_checkpoint` (a bertjax run or an HF BERT folder). An epoch
is one pass over the training windows (features), not the questions.
"""

from bertjax.configs import common


def get_config(arg: str | None = None):
    version, _, rest = (arg or "").partition(",")
    if version not in ("", "v1", "v2"):  # no version given: the whole argument is overrides
        version, rest = "", arg
    config = common.get_config()
    config.finetune.task = "squad"
    config.squad.version_2 = version == "v2"
    config.data.max_seq_length = 384
    config.optim.learning_rate = 5e-5
    config.optim.warmup_fraction = 0.1
    config.optim.weight_decay = 0.01
    config.finetune.num_epochs = 2.0 if config.squad.version_2 else 3.0
    config.train.global_batch_size = 48 if config.squad.version_2 else 32
    config.train.eval_batch_size = 64
    config.train.log_every = 100
    config.train.eval_every = 0  # evaluate at the end; set it to keep the best of several evaluations
    config.train.checkpoint_every = 1000
    config.train.keep_checkpoints = 1
    return common.apply_arg(config, rest)
