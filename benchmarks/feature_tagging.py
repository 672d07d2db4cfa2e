"""Feature-based tagging (the ELMo-style use of BERT): a frozen encoder, one layer combination, a small
BiLSTM tagger trained on top. Prints dev entity F1 per combination — the shape of the BERT paper's CoNLL-2003
table (BERT-base, dev F1: embeddings 91.0, second-to-last hidden 95.6, last hidden 94.9, weighted sum of the
last four 95.9, concatenation of the last four 96.1, weighted sum of all twelve 95.5; fine-tuning 96.4).
Here "sum_last_four" is an unweighted sum; "weighted_sum" learns softmax weights over every hidden state.

    python benchmarks/feature_tagging.py --config bertjax/configs/ner.py \\
        --config.train.init_checkpoint=runs/demo/pretrain --config.data.tokenizer=runs/demo/tokenizer.model \\
        --config.ner.train_file=eng.train --config.ner.validation_file=eng.testa

The encoder runs once over both splits; its hidden states (all layers) stay in memory, so keep the data
small (N sentences x L x (layers + 1) x D floats). Each combination then trains its tagger with Adam for
--steps batches. Without an init_checkpoint the encoder is random, a floor to compare against.
"""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from ml_collections import config_flags

from bertjax import cli, runs
from bertjax.model import BertModel
from bertjax.tasks import ner

_CONFIG = config_flags.DEFINE_config_file("config", "bertjax/configs/ner.py", "A tagging config (bertjax/configs/ner.py).")
_COMBINATIONS = flags.DEFINE_list("combinations", ["embeddings", "first", "last", "second_to_last", "sum_last_four",
                                                   "concat_last_four", "weighted_sum"], "Layer combinations.")
_STEPS = flags.DEFINE_integer("steps", 300, "Tagger updates per combination.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Sentences per update.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 3e-3, "Adam's learning rate for the tagger.")
_TAGGER_SIZE = flags.DEFINE_integer("tagger_size", 64, "LSTM units per direction.")


def encoder_states(task, params, features, batch_size: int = 64) -> np.ndarray:
    """(S, N, L, D) hidden states of the frozen encoder: the embeddings output, then every layer's."""
    encoder = BertModel(task.model_config)
    run = jax.jit(lambda p, ids, segments, mask: jnp.stack(
        encoder.apply({"params": p}, ids, segments, mask).hidden_states))  # S, B, L, D
    states = [np.asarray(run(params, *(features[name][start:start + batch_size]
                                       for name in ("input_ids", "segment_ids", "attention_mask"))))
              for start in range(0, len(features["input_ids"]), batch_size)]
    return np.concatenate(states, axis=1)


def main(argv):
    del argv
    config = _CONFIG.value
    try:  # a run's or an HF folder's model config and tokenizer, where the fine-tuning module offers it
        from bertjax import finetune
        finetune.resolve_from_checkpoint(config)
    except ImportError:
        pass
    task = ner.NerTask(config)
    train_features, (dev_sentences, dev_features) = task.split("train")[1], task.split("validation")
    abstract = jax.eval_shape(functools.partial(task.init_params, jax.random.PRNGKey(0), task.example_batch(1)))
    if config.train.init_checkpoint:
        params = runs.load_params(config.train.init_checkpoint, {"bert": abstract["bert"]})["bert"]
    else:
        params = task.init_params(jax.random.PRNGKey(0), task.example_batch(1))["bert"]
    start = time.perf_counter()
    train_states, dev_states = encoder_states(task, params, train_features), encoder_states(task, params, dev_features)
    print(f"encoder features: {train_states.shape[1]} + {dev_states.shape[1]} sentences, "
          f"{train_states.shape[0]} hidden states of {train_states.shape[-1]} ({time.perf_counter() - start:.1f}s); "
          f"encoder from {config.train.init_checkpoint or 'random initialisation'}")
    print(f"{'combination':<18} {'dev F1':>7} {'precision':>9} {'recall':>7} {'seconds':>8}")
    for how in _COMBINATIONS.value:
        if "four" in how and train_states.shape[0] < 5 or how == "second_to_last" and train_states.shape[0] < 3:
            print(f"{how:<18} needs more layers than this encoder's {train_states.shape[0] - 1}")
            continue
        start = time.perf_counter()
        tagger, tagger_params = ner.fit_feature_tagger(
            how, len(task.labels), train_states, train_features, steps=_STEPS.value, batch_size=_BATCH_SIZE.value,
            learning_rate=_LEARNING_RATE.value, hidden_size=_TAGGER_SIZE.value)
        tag_ids = ner.predict_feature_tags(tagger, tagger_params, dev_states, dev_features)
        tags = ner.word_tags(tag_ids, dev_features, dev_sentences, task.labels)
        metrics = ner.entity_metrics([list(sentence.tags) for sentence in dev_sentences], tags)
        print(f"{how:<18} {100 * metrics['f1']:7.2f} {100 * metrics['precision']:9.2f} "
              f"{100 * metrics['recall']:7.2f} {time.perf_counter() - start:8.1f}")


if __name__ == "__main__":
    cli.run(main)
