"""The experiments behind BERT's masked objective, on a corpus read offline from the installed Python and
its packages (`builtin:environment`), at a small, equal budget (`bertjax reproduce` is their command line).

Pretrains, each for the same number of updates of the same batch of rows (same tokens seen): BERT (masked LM
+ next-sentence prediction), a forward (GPT-style) causal LM, the unmasked shifted LM (predict t+1 with full
bidirectional attention) and ELMo (a two-layer biLSTM LM), with parameter counts kept comparable; the
transformers have four layers, so that "the last four" exist. Then uses them downstream, on tasks made from
the standard library's docstrings and labelled by the code (`bertjax.tasks.glue.BUILTIN_TASKS`,
`bertjax.data.docstring_tags`):

- learning curves: BERT's model fine-tuned with 32, 128, 512 and all training labels, several seeds each,
  against the same architecture from scratch and a bag-of-words baseline, on a single-text task (`stdlib`:
  which package a docstring comes from) and a sentence pair (`same_docstring`: do two sentences come from
  the same docstring);
- a right-context tagging task (`calls`: the name before a "(", told only by what follows it), fine-tuned from
  BERT's model, the left-to-right LM and scratch, against ELMo's frozen features under a BiLSTM;
- the BERT paper's feature-layer table: a BiLSTM tagger on a frozen model's embeddings, last, second-to-last,
  sum or concatenation of the last four layers, or a learned weighted sum of all.

`claims` judges each claim from the numbers by one stated rule; `running` holds the runs, `report` the plots
and tables; `reproduce` does all of it.
"""

import dataclasses
import pathlib
import time

from bertjax.experiments.settings import EXPERIMENTS, Settings

__all__ = ["EXPERIMENTS", "Settings", "reproduce"]


def reproduce(settings: Settings, workdir: pathlib.Path, output_dir: pathlib.Path, command: str) -> dict:
    """Run (or reuse) every run `settings` asks for in `workdir`, then write `loss_curves.png`,
    `learning_curves.png`, `results.md` and `results.json` to `output_dir`; `command` is how the report says
    it was made. Returns what `results.json` holds."""
    from bertjax import files
    from bertjax.experiments import claims, report, running

    start = time.perf_counter()
    metadata = running.prepare(workdir, settings)
    baseline = running.unigram_baseline(workdir)
    names = list(settings.experiments)
    results = {name: running.pretrain(name, workdir, settings) for name in names}
    downstream = running.downstream(names, workdir, settings)
    judged = claims.judge(results, downstream, baseline)
    seconds = {**report.part_seconds(results, downstream), "invocation": time.perf_counter() - start}
    print(f"this run took {seconds['invocation'] / 60:.1f} min (training, evaluation, downstream, plots)")
    output_dir.mkdir(parents=True, exist_ok=True)
    report.plot(results, output_dir / "loss_curves.png")
    written = [output_dir / "loss_curves.png"]
    if downstream.get("curves"):
        report.plot_curves(downstream["curves"], output_dir / "learning_curves.png")
        written.append(output_dir / "learning_curves.png")
    text = report.report(results, downstream, judged, metadata, baseline, seconds, command, settings)
    record = {"command": command, "seconds": seconds, "corpus": {"source": metadata["source"], **metadata["corpus"]},
              "unigram_baseline": baseline, "claims": [dataclasses.asdict(claim) for claim in judged],
              "results": results, "downstream": downstream}
    files.write_json(output_dir / "results.json", record)
    (output_dir / "results.md").write_text(text)
    print(text)
    print("wrote " + ", ".join(str(path) for path in [*written, output_dir / "results.md", output_dir / "results.json"]))
    return record
