"""BERT in JAX and Flax: pretraining, fine-tuning, conversion to and from HF, and predictions.

`bertjax.load(path)` gives a predictor for a fine-tuned run or an HF folder (`bertjax.predictor`); JAX is
imported on that call, not by `import bertjax`.
"""


def load(path, **options):
    """`bertjax.predictor.load`: a fine-tuned run (its best parameters) or an HF folder -> a `Predictor` with
    `classify`, `tag`, `answer` and `stream`."""
    from bertjax import predictor

    return predictor.load(path, **options)
