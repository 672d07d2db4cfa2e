"""The experiments behind BERT's masked objective, on the built-in corpus at a small, equal budget
(`bertjax reproduce` is their command line).

Pretrains, each for the same number of updates of the same batch of rows (same tokens seen): BERT (masked LM
+ next-sentence prediction), a forward (GPT-style) causal LM, the unmasked shifted LM (predict t+1 with full
bidirectional attention), two separate forward and backward causal transformers, and ELMo (a two-layer biLSTM
LM), with parameter counts kept comparable; the transformers have four layers, so that "the last four" exist.
Then uses them downstream (`bertjax.tasks.transfer`), every model pooled alike (the mean of a layer over real
tokens):

- fine-tuned: each pretrained model whole, plus a linear classifier on its mean-pooled top layer, trained on
  the `stdlib` task's train split (which package a docstring comes from) and scored on its dev split, the
  same budget for each, at each of a few peak rates (the best on dev reported, as in BERT's paper, so that no
  model is judged at a rate chosen for another); each architecture trained the same way from scratch is the
  control;
- feature-based: the frozen model's layers, mean-pooled, combined by ELMo's learned scalar mix under a linear
  classifier, on the same task; each architecture untrained is the control;
- the BERT paper's feature-layer table on a tagging task made from the corpus (`bertjax.data.docstring_tags`:
  parameter and module-definition names in function docstrings, labelled from the code): a small BiLSTM
  tagger on a frozen model's embeddings, last, second-to-last, sum or concatenation of the last four layers,
  or a learned weighted sum of all; dev entity F1, beside a dictionary baseline and an untrained encoder.

`running` holds the runs and their settings, `report` the plot and tables; `reproduce` does all of it.
"""

import pathlib
import time

from bertjax.experiments.settings import EXPERIMENTS, Settings

__all__ = ["EXPERIMENTS", "Settings", "reproduce"]


def reproduce(settings: Settings, workdir: pathlib.Path, output_dir: pathlib.Path, command: str) -> dict:
    """Run (or reuse) every run `settings` asks for in `workdir`, then write `loss_curves.png`, `results.md`
    and `results.json` to `output_dir`; `command` is how the report says it was made. Returns what
    `results.json` holds."""
    from bertjax import files
    from bertjax.experiments import report, running

    start = time.perf_counter()
    running.prepare(workdir, settings)
    names = list(settings.experiments)
    results = {name: running.pretrain(name, workdir, settings) for name in names}
    downstream = running.downstream(names, workdir, settings)
    seconds = {**report.part_seconds(results, downstream), "invocation": time.perf_counter() - start}
    print(f"this run took {seconds['invocation'] / 60:.1f} min (training, evaluation, downstream, plots)")
    output_dir.mkdir(parents=True, exist_ok=True)
    report.plot(results, output_dir / "loss_curves.png")
    text = report.report(results, downstream, seconds, command, settings)
    record = {"command": command, "seconds": seconds, "results": results, "downstream": downstream}
    files.write_json(output_dir / "results.json", record)
    (output_dir / "results.md").write_text(text)
    print(text)
    print(f"wrote {output_dir / 'loss_curves.png'}, {output_dir / 'results.md'}, {output_dir / 'results.json'}")
    return record
