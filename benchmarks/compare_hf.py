"""bertjax against HF transformers' PyTorch BertForPreTraining: the same BERT, batch, sequence length and data,
one full training step each (forward, backward, AdamW update), on this machine in one run.

    python benchmarks/compare_hf.py --variant base --seq_length 128 --batch_size 8 --rounds 3

Each side runs in its own process (so that its peak memory is its own), the sides alternating for --rounds
rounds so that a change in the machine's load touches both; each round times --steps steps after --warmup.
The ratio is of the medians over all rounds. HF scores every position with its MLM head, as its users run
it; bertjax is timed both with its default (the head on the masked positions only) and with
`train.mlm_positions=all`, the same work as HF's.
"""

import json
import statistics
import subprocess
import sys
import time

from absl import app, flags

_VARIANT = flags.DEFINE_string("variant", "base", "bertjax.model.VARIANTS row.")
_LENGTH = flags.DEFINE_integer("seq_length", 128, "Tokens per row.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Rows per step.")
_REAL = flags.DEFINE_float("real_fraction", 1.0, "Mean share of real tokens per row.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per round.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating rounds of both sides.")
_SIDE = flags.DEFINE_enum("side", None, ["hf", "bertjax", "bertjax_all"], "Internal: run one side and print JSON.")


def _setting():
    from bertjax.benchmark import synthetic_batch
    from bertjax.model import BertConfig

    config = BertConfig.from_variant(_VARIANT.value)
    predictions = max(1, round(0.15 * _LENGTH.value))
    batch = synthetic_batch(config, _BATCH.value, _LENGTH.value, predictions, real_fraction=_REAL.value)
    return config, batch


def _run_hf() -> list[float]:
    import numpy as np
    import torch
    import transformers

    config, batch = _setting()
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size,
        hidden_dropout_prob=config.hidden_dropout, attention_probs_dropout_prob=config.attention_dropout,
        max_position_embeddings=config.max_position_embeddings)
    model = transformers.BertForPreTraining(hf_config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    labels = np.full(batch["input_ids"].shape, -100, np.int64)
    rows = np.nonzero(batch["masked_weights"])[0]
    labels[rows, batch["masked_positions"][batch["masked_weights"] > 0]] = batch["masked_ids"][batch["masked_weights"] > 0]
    inputs = {"input_ids": torch.as_tensor(batch["input_ids"], dtype=torch.long),
              "token_type_ids": torch.as_tensor(batch["segment_ids"], dtype=torch.long),
              "attention_mask": torch.as_tensor(batch["attention_mask"], dtype=torch.long),
              "labels": torch.as_tensor(labels), "next_sentence_label": torch.as_tensor(batch["sentence_label"],
                                                                                        dtype=torch.long)}

    def step():
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(_WARMUP.value):
        step()
    seconds = []
    for _ in range(_STEPS.value):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds


def _run_bertjax(mlm_positions: str) -> list[float]:
    from bertjax import benchmark
    from bertjax.configs import common

    _, batch = _setting()
    config = common.get_config()
    config.model.variant = _VARIANT.value
    config.train.mlm_positions = mlm_positions
    config.optim.learning_rate = 1e-4
    task = benchmark.synthetic_task(config)
    return benchmark.time_train_steps(task, config.optim, batch, steps=_STEPS.value, warmup=_WARMUP.value).seconds


def _side(name: str) -> dict:
    result = subprocess.run([sys.executable, __file__, f"--side={name}", f"--variant={_VARIANT.value}",
                             f"--seq_length={_LENGTH.value}", f"--batch_size={_BATCH.value}",
                             f"--real_fraction={_REAL.value}", f"--steps={_STEPS.value}", f"--warmup={_WARMUP.value}"],
                            capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    if _SIDE.value:
        seconds = _run_hf() if _SIDE.value == "hf" else _run_bertjax("all" if _SIDE.value == "bertjax_all" else "masked")
        from bertjax.cli import peak_memory_mb
        print(json.dumps({"seconds": seconds, "peak_mb": peak_memory_mb()}))
        return
    import os

    import torch

    sides = ("hf", "bertjax", "bertjax_all")
    runs = {name: [] for name in sides}
    for _ in range(_ROUNDS.value):
        for name in sides:
            runs[name].append(_side(name))
    tokens = _BATCH.value * _LENGTH.value * _REAL.value
    medians = {name: statistics.median([s for run in results for s in run["seconds"]]) for name, results in runs.items()}
    memory = {name: max(run["peak_mb"] for run in results) for name, results in runs.items()}
    print(f"BERT-{_VARIANT.value}, batch {_BATCH.value} x {_LENGTH.value}, full training step (AdamW), "
          f"{os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"median of {_ROUNDS.value} x {_STEPS.value} steps per side")
    print(f"{'side':<34} {'step ms':>9} {'tokens/s':>10} {'peak MB':>9} {'tokens/s vs HF':>15}")
    labels = {"hf": "HF BertForPreTraining (PyTorch)", "bertjax": "bertjax (MLM on masked positions)",
              "bertjax_all": "bertjax (MLM on every position)"}
    for name in sides:
        print(f"{labels[name]:<34} {medians[name] * 1e3:>9.1f} {tokens / medians[name]:>10,.0f} {memory[name]:>9,.0f} "
              f"{medians['hf'] / medians[name]:>14.2f}x")


if __name__ == "__main__":
    app.run(main)
