"""The demo's fine-tuning: which of ten standard-library packages a docstring comes from (the `stdlib`
task), on top of the demo's pretrained BERT-tiny, named by --config.train.init_checkpoint (`make demo` runs
it after pretraining, and the same model from scratch for comparison)."""

from bertjax.configs import common, glue


def get_config(arg: str | None = None):
    config = glue.get_config("task=stdlib")
    config.unlock()
    config.optim.learning_rate = 1e-3  # a tiny model fine-tunes at a larger rate than BERT-base's 2e-5
    config.finetune.num_epochs = 8.0
    config.train.eval_every = 50
    config.train.log_every = 25
    config.data.max_seq_length = 128
    return common.apply_arg(config, arg)
