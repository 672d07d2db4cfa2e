"""SQuAD fine-tuning, BERT's recipe: length 384, stride 128, 2 epochs at 3e-5 with batch 32, 10% warmup.

The argument picks the version: `configs/squad.py:v2` (or `...:v2,squad.train_file=...`). Give the
official files and the pretrained weights on the command line:
    --config.squad.train_file=train-v1.1.json --config.squad.validation_file=dev-v1.1.json
    --config.data.tokenizer=... --config.train.init_checkpoint=...
"""

from configs import common


def get_config(arg: str | None = None):
    version, _, rest = (arg or "").partition(",")
    if version not in ("", "v1", "v2"):  # no version given: the whole argument is overrides
        version, rest = "", arg
    config = common.get_config()
    config.squad.version_2 = version == "v2"
    config.data.max_seq_length = 384
    config.model.max_position_embeddings = 512
    config.optim.learning_rate = 3e-5
    config.optim.weight_decay = 0.01
    config.optim.schedule = "linear"
    # SQuAD v1.1 train: 87,599 questions -> about 88,600 features at 384/128; 2 epochs of 32 = 5,540 steps.
    config.train.num_steps = 5540
    config.optim.warmup_steps = 554
    config.train.global_batch_size = 32
    config.train.eval_batch_size = 64
    config.train.log_every = 100
    config.train.eval_every = 0
    config.train.checkpoint_every = 1000
    return common.apply_arg(config, rest)
