"""The pretraining task: BERT's masked LM plus the sentence task, on the prepared-shards pipeline (the task
contract is `bertjax.tasks.base.Task`).

Built with `data=False` it has the model and loss alone, with no tokenizer or prepared data: what benchmarks
and memory tables time on synthetic batches (`bertjax.benchmark`).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bertjax import flops, losses
from bertjax.data import pipeline, shards, tokenizer
from bertjax.heads import BertForPretraining, gather_positions
from bertjax.model import BertConfig
from bertjax.tasks.base import TaskBase


class PretrainingTask(TaskBase):
    name = "pretraining"

    def __init__(self, config, *, data: bool = True, real_vocab_size: int | None = None):
        """With data, an unset `config.model.vocab_size` is set to the tokenizer's. `data=False`: no tokenizer
        or prepared data (`dataset` refuses); `real_vocab_size` then says how many of the model's ids are real
        (a vocabulary padded to a multiple of 128 masks the rest)."""
        if config.train.mlm_positions not in ("masked", "all"):
            raise ValueError(f"train.mlm_positions={config.train.mlm_positions!r}: choose 'masked' or 'all'.")
        self.mlm_all_positions = config.train.mlm_positions == "all"
        self.data, self.tokenizer = config.data, None
        if data:  # before the model: an unset model.vocab_size is the tokenizer's
            self.require(config.data, ("prepared_dir",), "data", "(`bertjax prepare_data` makes it).")
            # Recorded in the run's config.json: export, generate and features find the tokenizer there.
            config.data.tokenizer = shards.resolve_tokenizer(config.data)
            self.tokenizer = tokenizer.load_tokenizer(config.data.tokenizer, config.data.lowercase)
            self.follow_tokenizer(config.model, self.tokenizer, config.data.tokenizer)
        self.model_config = BertConfig.from_config(config.model)
        self.model = BertForPretraining(self.model_config)
        if not data:
            self.real_vocab_size = real_vocab_size or self.model_config.vocab_size
            self.identity = {"task": f"{self.name} (no data)"}
            return
        self.check_sequence_length(config.data.max_seq_length, self.model_config)
        shards.check_compatible(config.data.prepared_dir, self.tokenizer, self.model_config.vocab_size)
        for split in ("train", "validation"):  # both must hold documents: found now, not at the final evaluation
            shards.split_paths(config.data.prepared_dir, split)
        self.real_vocab_size = self.tokenizer.vocab_size  # the model's may be padded
        # Recorded in each checkpoint; resuming with other values is refused.
        self.identity = {"task": self.name, "tokenizer_fingerprint": self.tokenizer.fingerprint}

    # --- data -----------------------------------------------------------------------------------------------
    def dataset(self, split: str, *, batch_size: int, seed: int, train: bool, process_index: int = 0,
                process_count: int = 1):
        if self.tokenizer is None:
            raise ValueError("This pretraining task was built without data (data=False).")
        return pipeline.pretraining_dataset(self.data, self.tokenizer, split, batch_size=batch_size, seed=seed,
                                            train=train, process_index=process_index, process_count=process_count)

    def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        """An all-padding batch of the pipeline's shapes, to initialise and compile with."""
        return pipeline.empty_batch(self.data, batch_size)

    def model_flops(self, batch) -> float:
        """Model FLOPs of a training step on `batch`, counting real tokens (see bertjax.flops). It counts them
        itself: the loop calls `real_tokens` once a step, which tests count."""
        rows, length = batch["input_ids"].shape
        return flops.analytic_flops(self.model_config, rows, length, batch["masked_positions"].shape[1],
                                    tokens=int(np.count_nonzero(batch["attention_mask"])))

    # --- model ----------------------------------------------------------------------------------------------
    def init_params(self, rng: jax.Array, batch, boxed: bool = False):
        """Parameters; `boxed` keeps their logical axis names (for shardings)."""
        params = self.model.init(rng, **self._inputs(batch))["params"]
        return params if boxed else nn.meta.unbox(params)

    @staticmethod
    def _inputs(batch):
        names = ("input_ids", "segment_ids", "attention_mask", "position_ids", "masked_positions", "cls_positions")
        return {name: batch[name] for name in names if name in batch}

    def loss(self, params, batch, rng: jax.Array | None, normalizers=None):
        """(loss, metric sums); dropout is on when `rng` is given.

        The MLM head scores only the masked positions, unless `train.mlm_positions="all"` (every position
        scored, then the masked ones picked: the same loss, more work; kept to measure the difference).
        Logits of ids past the tokenizer's vocabulary (a model vocabulary padded to a multiple of 128) are
        masked out, so padding changes the speed and not the loss."""
        inputs = self._inputs(batch)
        positions = inputs.pop("masked_positions") if self.mlm_all_positions else None
        output = self.model.apply({"params": params}, **inputs, deterministic=rng is None,
                                  rngs={"dropout": rng} if rng is not None else {})
        logits = output.mlm_logits if positions is None else gather_positions(output.mlm_logits, positions)
        if self.real_vocab_size < self.model_config.vocab_size:
            real = jnp.arange(self.model_config.vocab_size) < self.real_vocab_size
            logits = jnp.where(real, logits, jnp.asarray(-1e9, logits.dtype))
        return losses.pretraining_loss(output._replace(mlm_logits=logits), batch, normalizers)

    normalizers = staticmethod(losses.pretraining_normalizers)
    summarize = staticmethod(losses.summarize)

    def unigram_baseline(self, batch_size: int) -> dict[str, float]:
        """What a model without context scores on the validation split's masked tokens: accuracy of always
        guessing the training split's most frequent token, and cross entropy of its unigram distribution
        (add-one smoothed). Reads the whole training split once."""
        counts = np.zeros(self.tokenizer.vocab_size, np.int64)
        source = shards.DocumentSource(shards.split_paths(self.data.prepared_dir, "train"))
        for index in range(len(source)):
            for sentence in source[index]:
                counts += np.bincount(sentence, minlength=len(counts))
        counts[self.tokenizer.special_ids] = 0
        log_probabilities = np.log((counts + 1) / (counts + 1).sum())
        correct = total = loss = 0.0
        for batch in self.dataset("validation", batch_size=batch_size, seed=0, train=False):
            targets = batch["masked_ids"][batch["masked_weights"] > 0]
            correct += np.sum(targets == np.argmax(counts))
            loss -= np.sum(log_probabilities[targets])
            total += len(targets)
        return {"mlm_accuracy": correct / max(total, 1), "mlm_loss": loss / max(total, 1)}
