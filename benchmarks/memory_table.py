"""Memory a BERT needs per device for one training step, from the model itself.

    python benchmarks/memory_table.py [--variants base,large] [--lengths 128,512] [--tokens 4096]

Parameters and AdamW state are counted from the parameter shapes (float32: 4 bytes a parameter, plus 8 for
the two moments); the step's temporaries (activations kept for the backward pass, gradients, workspace) come
from XLA's memory analysis of the compiled train step for one device, with bf16 matrix products, at
`--tokens` tokens per device (32 x 128 or 8 x 512 by default). With FSDP over N devices, parameters and
optimizer state divide by N; activations divide with the batch.
"""

import argparse
import functools

import jax
import numpy as np

from bertjax import train
from bertjax.optim import make_optimizer
from bertjax.tasks.pretraining import PretrainingTask
from bertjax.configs import common


def step_memory(variant: str, length: int, tokens: int, remat: str) -> dict[str, float]:
    config = common.get_config()
    config.model.update(variant=variant, dtype="bfloat16", attention_dropout=0.0, remat=remat)
    batch_size = max(tokens // length, 1)
    predictions = round(0.15 * length)
    batch = {
        "input_ids": jax.ShapeDtypeStruct((batch_size, length), np.int32),
        "segment_ids": jax.ShapeDtypeStruct((batch_size, length), np.int32),
        "attention_mask": jax.ShapeDtypeStruct((batch_size, length), np.int32),
        "masked_positions": jax.ShapeDtypeStruct((batch_size, predictions), np.int32),
        "masked_ids": jax.ShapeDtypeStruct((batch_size, predictions), np.int32),
        "masked_weights": jax.ShapeDtypeStruct((batch_size, predictions), np.float32),
        "sentence_label": jax.ShapeDtypeStruct((batch_size,), np.int32),
    }
    optim = common.optim_config()
    optim.warmup_steps = 1
    optimizer = make_optimizer(optim, 10)
    task = PretrainingTask(config, data=False)
    zeros = {name: np.zeros(value.shape, value.dtype) for name, value in batch.items()}
    state = jax.eval_shape(functools.partial(train.init_train_state, task, optimizer, 0, zeros))
    step, _ = train.compile_steps(task, optimizer, 1)
    analysis = step.lower(state, batch).compile().memory_analysis()
    parameters = train.count_parameters(state.params)
    return {"parameters": parameters, "batch": batch_size,
            "state_gb": parameters * 12 / 2**30, "temporary_gb": analysis.temp_size_in_bytes / 2**30}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="base,large")
    parser.add_argument("--lengths", default="128,512")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--remat", default="none,full")
    args = parser.parse_args()
    print("| model | length | batch per device | remat | parameters | params + AdamW (fp32) | step temporaries "
          "(XLA) | total, one device | total, FSDP over 8 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for variant in args.variants.split(","):
        for length in map(int, args.lengths.split(",")):
            for remat in args.remat.split(","):
                figures = step_memory(variant, length, args.tokens, remat)
                state, temporary = figures["state_gb"], figures["temporary_gb"]
                print(f"| {variant} | {length} | {figures['batch']} | {remat} | {figures['parameters']:,} | "
                      f"{state:.2f} GB | {temporary:.2f} GB | {state + temporary:.2f} GB | "
                      f"{state / 8 + temporary:.2f} GB |", flush=True)


if __name__ == "__main__":
    main()
