"""The demo's fine-tuning: which of ten standard-library packages a docstring comes from (the `stdlib`
task), on top of the demo's pretrained BERT-tiny, named by --config.train.init_checkpoint. Pretraining's
claim is about few labels and little training, so the demo trains on 512 of the 1,573 labelled docstrings
(drawn by each seed, stratified by package) for 100 updates: `make demo` runs it for three seeds, and the
same model from scratch on the same labels and budget for comparison. With all the labels and enough
updates the two end level (`docs/experiments.md`); `finetune.train_examples=0` trains on all of them."""

from bertjax.configs import common, glue


def get_config(arg: str | None = None):
    config = glue.get_config("task=stdlib")
    config.unlock()
    config.optim.learning_rate = 1e-3  # a tiny model fine-tunes at a larger rate than BERT-base's 2e-5
    config.finetune.train_examples = 512
    config.finetune.num_epochs = 0.0  # the budget is train.num_steps: 6.25 epochs of 512 labels
    config.train.num_steps = 100
    config.train.eval_every = 50
    config.train.log_every = 25
    config.data.max_seq_length = 128
    return common.apply_arg(config, arg)
