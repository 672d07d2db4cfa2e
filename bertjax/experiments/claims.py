"""The claims the experiments test, each judged from the numbers by one stated rule (`RULE`), never typed in.

A claim compares two measurements, "a beats b". Each is a mean over seeds with a standard error (the seeds'
standard deviation over the square root of their number), or a proportion or mean over many held-out items
with its own standard error; the difference's standard error is the two combined (`difference`). The
verdict (`verdict`) is then:

    reproduced                                 a - b  >  2 standard errors of the difference
    not reproduced                             a - b  < -2 standard errors (b beats a)
    inconclusive (difference within noise)     otherwise

A claim made of several comparisons (MLM beats both the left-to-right model and ELMo's features) is
reproduced when every comparison is, not reproduced when any goes the other way, else inconclusive.
"""

import dataclasses
import math
import statistics
from collections.abc import Sequence

RULE = ("a claim \"a beats b\" is reproduced when a - b exceeds two standard errors of the difference, not "
        "reproduced when b - a does, and inconclusive (difference within noise) otherwise; a standard error is "
        "the seeds' standard deviation over the square root of their number, or a proportion's binomial one over "
        "the items it counts; a claim of several comparisons needs all of them")
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive (difference within noise)"


@dataclasses.dataclass(frozen=True)
class Measure:
    """A measured value and its standard error."""
    value: float
    standard_error: float

    @classmethod
    def of_seeds(cls, values: Sequence[float]) -> "Measure":
        """The mean over seeds, with the standard error of that mean (0 for a single seed)."""
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), spread / math.sqrt(len(values)))

    @classmethod
    def of_proportion(cls, proportion: float, items: int) -> "Measure":
        """A proportion over `items` (an accuracy, or an F1 over that many gold entities), with its binomial
        standard error."""
        return cls(proportion, math.sqrt(max(proportion * (1 - proportion), 0.0) / max(items, 1)))


def difference(a: Measure, b: Measure) -> Measure:
    return Measure(a.value - b.value, math.hypot(a.standard_error, b.standard_error))


def verdict(a: Measure, b: Measure) -> str:
    """"a beats b" judged by `RULE`."""
    gap = difference(a, b)
    if gap.value > 2 * gap.standard_error:
        return REPRODUCED
    if gap.value < -2 * gap.standard_error:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def all_of(verdicts: Sequence[str]) -> str:
    """A claim of several comparisons: reproduced if every one is, not reproduced if any goes the other way."""
    if any(found == NOT_REPRODUCED for found in verdicts):
        return NOT_REPRODUCED
    return REPRODUCED if all(found == REPRODUCED for found in verdicts) else INCONCLUSIVE


def shown(measure: Measure, percent: bool = True) -> str:
    if percent:
        return f"{measure.value:.1%} ± {measure.standard_error:.1%}"
    return f"{measure.value:.3f} ± {measure.standard_error:.3f}"


@dataclasses.dataclass(frozen=True)
class Claim:
    number: str
    claim: str
    evidence: str
    verdict: str


def _comparison(a_name: str, a: Measure, b_name: str, b: Measure, percent: bool = True) -> str:
    gap = difference(a, b)
    scale = 100 if percent else 1
    unit = " points" if percent else ""
    return (f"{a_name} {shown(a, percent)} vs {b_name} {shown(b, percent)}: difference "
            f"{gap.value * scale:+.1f}{unit} (2 standard errors: {2 * gap.standard_error * scale:.1f})")


def judge(results: dict, downstream: dict, baseline: dict) -> list[Claim]:
    """Every claim the runs in `results` (pretraining, by model) and `downstream` can judge, in order."""
    found = []
    tokens = baseline["tokens"]
    causal, shifted = results.get("causal_lm"), results.get("shifted_lm_unmasked")
    if causal and shifted:
        a = Measure.of_proportion(shifted["final"]["lm_accuracy"], tokens)
        b = Measure.of_proportion(causal["final"]["lm_accuracy"], tokens)
        probe = shifted.get("as_forward_lm", {})
        found.append(Claim(
            "1", "the unmasked shifted LM copies its next input: its held-out next-token accuracy beats the causal "
                 "LM's, which cannot see the answer",
            _comparison("shifted LM", a, "causal LM", b) + (
                f"; the same parameters denied the next token score {probe['lm_accuracy']:.1%} (loss "
                f"{probe['lm_loss']:.2f})" if probe else ""),
            verdict(a, b)))
    if causal:
        a = Measure(-causal["final"]["lm_loss"], baseline["loss_standard_error"])
        b = Measure(-baseline["loss"], baseline["loss_standard_error"])
        found.append(Claim(
            "2", "the causal LM generates text from what it learned: its held-out loss beats the unigram "
                 "distribution's (samples in the report)",
            f"held-out cross entropy {causal['final']['lm_loss']:.3f} vs unigram {baseline['loss']:.3f} nats per "
            f"token over {tokens:,} tokens (2 standard errors: "
            f"{2 * difference(a, b).standard_error:.3f})", verdict(a, b)))
    calls = downstream.get("calls", {}).get("f1", {})
    if "bert_mlm" in calls:
        mlm = Measure.of_seeds(calls["bert_mlm"])
        rivals = [(name, label) for name, label in (("causal_lm", "left-to-right LM fine-tuned"),
                                                   ("elmo_features", "ELMo's features"))
                  if name in calls]
        if rivals:
            found.append(Claim(
                "3", "on the right-context task (calls), BERT's MLM model fine-tuned beats a left-to-right LM "
                     "fine-tuned and ELMo-style features (dev entity F1)",
                "; ".join(_comparison("MLM", mlm, label, Measure.of_seeds(calls[name])) for name, label in rivals),
                all_of([verdict(mlm, Measure.of_seeds(calls[name])) for name, _ in rivals])))
    for task, curve in downstream.get("curves", {}).items():
        for size in [size for size in curve["points"]["pretrained"] if size != "0"][:2]:
            a = Measure.of_seeds(curve["points"]["pretrained"][size])
            b = Measure.of_seeds(curve["points"]["scratch"][size])
            found.append(Claim(
                "4", f"pretrained beats the same architecture from scratch on {task} with {int(size):,} labels "
                     f"(dev accuracy over {len(curve['points']['pretrained'][size])} seeds)",
                _comparison("pretrained", a, "scratch", b), verdict(a, b)))
    tagging = downstream.get("tagging", {}).get("bert_mlm")
    if tagging and all(row in tagging for row in ("embeddings", "last")):
        entities = tagging["last"]["entities"]
        combined = [row for row in ("sum_last_four", "concat_last_four", "weighted_sum") if row in tagging]
        best = max(combined, key=lambda row: tagging[row]["f1"])
        best_measure = Measure.of_proportion(tagging[best]["f1"], entities)
        comparisons = [(row, Measure.of_proportion(tagging[row]["f1"], entities)) for row in ("last", "embeddings")]
        found.append(Claim(
            "5", "the feature-layer table has BERT's shape: the best combination of several layers beats the last "
                 "layer alone and the embeddings alone (dev entity F1 of a BiLSTM tagger on frozen features)",
            "; ".join(_comparison(best.replace("_", " "), best_measure, row.replace("_", " "), measure)
                      for row, measure in comparisons),
            all_of([verdict(best_measure, measure) for _, measure in comparisons])))
    return found
