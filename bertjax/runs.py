"""Run directories and the parameters in them: find a run's checkpoint, read its record, load the parameters
a model needs, with one shape check (`check_shapes`) for every way in.

    WORKDIR/config.json          the resolved config the run was made with
    WORKDIR/checkpoints/STEP/    `state` (parameters, ...) and `record` (JSON), written by bertjax.checkpoint
    WORKDIR/best/STEP/           a fine-tuning run's best parameters, with their metrics in the record

A path to a run names the run directory, its `checkpoints/` or `best/`, or one step's directory
(`step_directory` finds the newest step in it). `init_checkpoint` may also name an HF BERT folder
(`convert.is_hf_folder`), or the Hub id of one in the local HF cache (`hub.resolve_hf`).

- `load_params`: the parameters a model needs, every one from the checkpoint (`init_checkpoint`).
- `load_partial_params`: the same, but new heads start from fresh values (fine-tuning).
- `open_run`, `restore_params`, `load_run`: exactly a run's parameters, for the model of its head (export,
  feature extraction).
- `save_params`: a parameters-only run directory (converted checkpoints).
"""

import contextlib
import dataclasses
import json
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import traverse_util

from bertjax import convert, files, hub
from bertjax.model import BertConfig

Shapes = dict[tuple[str, ...], tuple[int, ...]]  # flattened parameter path -> shape


# --- finding a run ---------------------------------------------------------------------------------------------

def step_directory(path: str | pathlib.Path) -> pathlib.Path:
    """A run directory, its `checkpoints/` or `best/`, or one step's directory -> the step directory to read
    (the newest one)."""
    path = pathlib.Path(path)
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    if (path / "state").is_dir():
        return path
    steps = sorted((int(child.name), child) for child in path.iterdir() if child.name.isdigit() and child.is_dir())
    if not steps:
        raise FileNotFoundError(f"init_checkpoint {path}: no checkpoint there (expected a run directory, its "
                                "checkpoints/ directory, a step directory, or an HF BERT folder).")
    return steps[-1][1]


def _run_of(step_dir: pathlib.Path) -> pathlib.Path:
    return step_dir.parent.parent  # WORKDIR/checkpoints/STEP or WORKDIR/best/STEP


def run_directory(path: str | pathlib.Path) -> pathlib.Path | None:
    """The run directory (config.json beside checkpoints/) that a checkpoint path names or is in, or None
    where the path is not in a run (an HF folder, say)."""
    path = pathlib.Path(path)
    if not path.is_dir():
        return None
    try:
        run = _run_of(step_directory(path))
    except FileNotFoundError:
        return None
    return run if (run / "config.json").is_file() and (run / "checkpoints").is_dir() else None


def read_config(run: pathlib.Path) -> dict:
    """A run directory's `config.json`: the resolved config its checkpoints were made with."""
    path = run / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a run directory holds the config.json its checkpoints were "
                                "made with.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def _read_record(step_dir: pathlib.Path) -> dict:
    path = step_dir / "record" / "metadata"
    return json.loads(path.read_text()) if path.is_file() else {}


@contextlib.contextmanager
def _quiet_orbax():
    """Reading one item of a step directory on its own, orbax warns that the step's metadata file (one level
    up) is not beside it; nothing is wrong."""
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


def _stored_tree(step_dir: pathlib.Path) -> dict:
    """The metadata (shapes and dtypes, no data) of the parameters in a step's `state`."""
    with _quiet_orbax():
        metadata = ocp.PyTreeCheckpointer().metadata(step_dir / "state").item_metadata.tree
    if "params" not in metadata:
        raise ValueError(f"{step_dir / 'state'} holds no parameters (found {sorted(metadata)}).")
    return metadata["params"]


def _restore(step_dir: pathlib.Path, abstract_params: Any) -> Any:
    """The stored parameters that `abstract_params` names, in its shapes and shardings."""
    with _quiet_orbax():
        restored = ocp.PyTreeCheckpointer().restore(step_dir / "state", args=ocp.args.PyTreeRestore(
            item={"params": abstract_params}, partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args({"params": abstract_params})))
    return restored["params"]


# --- the shape check -------------------------------------------------------------------------------------------

def param_shapes(params: Any) -> Shapes:
    """Each leaf's shape, by flattened path: of arrays, `jax.ShapeDtypeStruct`s or orbax's metadata."""
    return {path: tuple(leaf.shape) for path, leaf in traverse_util.flatten_dict(params).items()}


def _name(path: tuple[str, ...]) -> str:
    return "/".join(path)


@dataclasses.dataclass(frozen=True)
class ShapeCheck:
    """How stored parameters compare with those a model needs. Each list is in the order of the names."""

    misshaped: list[tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]]  # (path, stored, the model's)
    missing: list[tuple[str, ...]]  # the model needs them; the checkpoint lacks them
    unexpected: list[tuple[str, ...]]  # the checkpoint holds them; the model has no such parameter

    def lines(self) -> list[str]:
        """One line per difference, for a checkpoint that must hold exactly the model's parameters."""
        return ([f"{_name(path)}: checkpoint {stored}, config {wanted}" for path, stored, wanted in self.misshaped]
                + [f"missing in the checkpoint: {_name(path)}" for path in self.missing]
                + [f"not in the model: {_name(path)}" for path in self.unexpected])

    def excluding(self, modules: Sequence[str]) -> "ShapeCheck":
        """The differences outside the top-level `modules` (new heads, which may start fresh)."""
        return ShapeCheck([entry for entry in self.misshaped if entry[0][0] not in modules],
                          [path for path in self.missing if path[0] not in modules], self.unexpected)

    def refuse_for_init(self, source: str) -> None:
        """Raise if a parameter the model needs is missing or of another shape (`init_checkpoint`: stored
        parameters the model does not use are left out, not refused)."""
        problems = [f"{_name(path)} has shape {stored}, the model needs {wanted}"
                    for path, stored, wanted in self.misshaped]
        if self.missing:
            problems.append("it lacks parameters the model needs: " + ", ".join(map(_name, self.missing)))
        if problems:
            raise ValueError(f"init_checkpoint {source} does not fit this model: " + "; ".join(problems)
                             + ". The checkpoint's model config differs from this run's.")


def check_shapes(stored: Shapes, wanted: Shapes) -> ShapeCheck:
    """The one comparison of a checkpoint's parameters (`stored`) with a model's (`wanted`), by name."""
    names = sorted({*stored, *wanted}, key=_name)
    return ShapeCheck(
        misshaped=[(path, stored[path], wanted[path]) for path in names
                   if path in stored and path in wanted and stored[path] != wanted[path]],
        missing=[path for path in names if path not in stored],
        unexpected=[path for path in names if path not in wanted])


# --- parameters for a model: init_checkpoint -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Source:
    """Where an init checkpoint's parameters are, the shape of each, and how to read those a model names."""

    where: str
    shapes: Shapes
    read: Callable[[Any], Any]  # abstract parameters -> the stored values they name, cast to their dtypes
    # Modules stored as zeros because the source model had none ("bert/head": an HF ModernBERT masked LM's
    # classification head): fine-tuning starts them fresh, as transformers does with weights a checkpoint lacks.
    placeholders: tuple[str, ...] = ()

    def placeholder(self, path: tuple[str, ...]) -> bool:
        return any(_name(path).startswith(f"{module}/") for module in self.placeholders)


def _source(path: str | pathlib.Path) -> _Source:
    """A run's checkpoint (its shapes read from the metadata, no data) or an HF BERT folder (converted once,
    whole: its tensors are needed for the shapes anyway)."""
    path = hub.resolve_hf(path).absolute()  # orbax reads absolute paths only
    if convert.is_hf_folder(path):
        _, params, absent = convert.load_hf_bert(path)
        flat = traverse_util.flatten_dict(params)

        def read(abstract):
            return traverse_util.unflatten_dict({name: flat[name] for name in traverse_util.flatten_dict(abstract)})

        return _Source(str(path), {name: tuple(value.shape) for name, value in flat.items()}, read, tuple(absent))
    step_dir = step_directory(path)
    return _Source(str(step_dir), param_shapes(_stored_tree(step_dir)), lambda abstract: _restore(step_dir, abstract),
                   tuple(_read_record(step_dir).get("zero_filled", ())))


def _read_cast(source: _Source, abstract_params: Any) -> Any:
    values = traverse_util.flatten_dict(source.read(abstract_params))
    return traverse_util.unflatten_dict({name: jnp.asarray(values[name], want.dtype)
                                         for name, want in traverse_util.flatten_dict(abstract_params).items()})


def load_params(path: str | pathlib.Path, abstract_params: Any) -> Any:
    """Parameters from another run's checkpoint (only those `abstract_params` names) or an HF BERT folder
    (`config.json` + `model.safetensors` or `pytorch_model.bin`). Shapes must fit the current model."""
    source = _source(path)
    check_shapes(source.shapes, param_shapes(abstract_params)).refuse_for_init(source.where)
    return _read_cast(source, abstract_params)


def load_partial_params(path: str | pathlib.Path, abstract_params: Any, fresh: Sequence[str],
                        fresh_params: Any) -> tuple[Any, str]:
    """Parameters for fine-tuning: those of `abstract_params` found in the checkpoint at `path` (a bertjax run
    or an HF folder), and `fresh_params`' values for the top-level modules named in `fresh` (new heads) that
    the checkpoint lacks or holds in another shape (another task's classifier), or holds only as the zeros
    of an import (`_Source.placeholders`). Any other parameter missing or mis-shaped is an error naming it.
    Returns (params, a one-line report of what was loaded and what is new)."""
    source = _source(path)
    stored, wanted = source.shapes, param_shapes(abstract_params)
    check = check_shapes(stored, wanted)
    check.excluding(fresh).refuse_for_init(source.where)
    misfits = {*check.missing, *(entry[0] for entry in check.misshaped), *filter(source.placeholder, wanted)}
    loaded = [name for name in wanted if name not in misfits]
    new = [name for name in wanted if name in misfits]
    abstract = traverse_util.flatten_dict(abstract_params)
    values = traverse_util.flatten_dict(_read_cast(source, traverse_util.unflatten_dict(
        {name: abstract[name] for name in loaded})))
    fresh_flat = traverse_util.flatten_dict(fresh_params)
    params = traverse_util.unflatten_dict({name: values[name] if name in values else fresh_flat[name]
                                           for name in wanted})
    unused = sorted({name[0] for name in stored} - {name[0] for name in loaded})
    report = (f"{len(loaded)} tensors ({sum(int(np.prod(wanted[n])) for n in loaded):,} values) loaded from "
              f"{source.where}; new: {', '.join(map(_name, new)) or 'none'}; not used: {', '.join(unused) or 'none'}")
    return params, report


# --- a run's own parameters: export, feature extraction --------------------------------------------------------

def save_params(workdir: str | pathlib.Path, params: Any, config: dict, record: dict, step: int = 0) -> pathlib.Path:
    """A run directory holding parameters only: `config.json` (a resolved config) and
    `checkpoints/STEP/` with `state` = {"params": ...} and the JSON `record`. `load_params` (init_checkpoint)
    and `open_run` read it. Both writes are atomic: an interrupted save leaves no half-written checkpoint."""
    workdir = pathlib.Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    files.write_json(workdir / "config.json", config)
    manager = ocp.CheckpointManager(workdir / "checkpoints", options=ocp.CheckpointManagerOptions(create=True),
                                    item_names=("state", "record"))
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": params}),
                                               record=ocp.args.JsonSave(record)), force=True)
    manager.wait_until_finished()
    manager.close()
    return workdir / "checkpoints" / str(step)


@dataclasses.dataclass(frozen=True)
class SavedRun:
    """What a run directory says about its latest checkpoint, before any tensor is read."""

    config: dict  # the resolved config (config.json)
    record: dict  # step, task, tokenizer fingerprint; fine-tuning runs add head, num_labels, labels
    step_dir: pathlib.Path
    stored_params: dict[tuple[str, ...], tuple[tuple[int, ...], str]]  # flattened path -> (shape, dtype)

    @property
    def head(self) -> str:
        """The run's head as `convert.HEADS` names it (a record without one is a pretraining run's)."""
        return convert.head_of_record(self.record)


def open_run(path: str | pathlib.Path) -> SavedRun:
    """A run directory (or its `checkpoints/`, `best/`, or one step's directory) -> its config, record and the
    names and shapes of the stored parameters."""
    path = pathlib.Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"Checkpoint {path} not found.")
    step_dir = step_directory(path)
    config = read_config(_run_of(step_dir))
    record = _read_record(step_dir)
    if "head" not in record and step_dir.parent.name == "best":  # a run's best parameters: the run says the head
        latest = step_directory(_run_of(step_dir) / "checkpoints")
        record = {**{key: value for key, value in _read_record(latest).items()
                     if key in ("head", "num_labels", "labels", "problem_type", "tokenizer_fingerprint",
                                "task")}, **record}
    stored = {path: (tuple(leaf.shape), str(leaf.dtype))
              for path, leaf in traverse_util.flatten_dict(_stored_tree(step_dir)).items()}
    return SavedRun(config, record, step_dir, stored)


def restore_params(run: SavedRun, abstract_params: Any) -> Any:
    """Every stored parameter onto `abstract_params`, which must name exactly the stored ones: a parameter the
    model has and the checkpoint lacks, one the checkpoint has and the model lacks, or a shape that differs
    fails, listing each, instead of leaving random weights or dropping trained ones."""
    stored = {path: shape for path, (shape, _) in run.stored_params.items()}
    problems = check_shapes(stored, param_shapes(abstract_params)).lines()
    if problems:
        raise ValueError(f"{run.step_dir} does not fit the model its config.json and record describe "
                         f"(head {run.head!r}):\n  " + "\n  ".join(problems))
    return _restore(run.step_dir, abstract_params)


def load_run(path: str | pathlib.Path) -> tuple[SavedRun, BertConfig, dict]:
    """A run's latest checkpoint -> (what the run says, its model config, all its parameters) as numpy arrays,
    for the model of the run's head (`convert.HEADS`)."""
    run = open_run(path)
    if "model" not in run.config:
        raise ValueError(f"{_run_of(run.step_dir) / 'config.json'} has no `model` group.")
    model_config = BertConfig.from_config(run.config["model"])
    abstract = convert.abstract_params(model_config, run.head, run.record.get("num_labels"))
    return run, model_config, restore_params(run, abstract)
