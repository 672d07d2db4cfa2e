"""Prepare TFDS's GLUE datasets offline, from the original GLUE files, for `tfds.data_source`.

    bertjax prepare_glue --glue_dir=glue_download --output_dir=tfds_data [--tasks=sst2,mnli]

--glue_dir holds the GLUE download: the zip files (CoLA.zip, SST-2.zip, QQP.zip, STS-B.zip, MNLI.zip,
QNLIv2.zip, RTE.zip, WNLI.zip, diagnostic.tsv) and/or their extracted folders (CoLA/, SST-2/, MRPC/, ...:
MRPC is distributed as a folder of train.tsv, dev.tsv and test.tsv). The result is glue/<task>/2.0.0 under
--output_dir, in ArrayRecord files; fine-tune from it with --config.finetune.tfds_data_dir=OUTPUT_DIR.
"""

import pathlib
import tempfile
import zipfile

from absl import flags

_GLUE_DIR = flags.DEFINE_string("glue_dir", None, "Folder with the GLUE zip files and/or extracted task folders.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "TFDS data directory to write glue/<task>/ into.")
_TASKS = flags.DEFINE_list("tasks", None, "Tasks to prepare (default: every task whose files are there).")
_SKIP_MALFORMED = flags.DEFINE_bool("skip_malformed_rows", False, "Skip rows with a wrong number of fields.")
flags.mark_flags_as_required(["glue_dir", "output_dir"])


def _extract(glue_dir: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    """A folder where every task's files are extracted: the zips unpacked, extracted folders linked."""
    zips = sorted(glue_dir.glob("*.zip"))
    if not zips:
        return glue_dir
    for path in zips:
        with zipfile.ZipFile(path) as archive:
            archive.extractall(into)
    for child in glue_dir.iterdir():
        if child.is_dir() and not (into / child.name).exists():
            (into / child.name).symlink_to(child.absolute())
    if (glue_dir / "diagnostic.tsv").is_file():  # AX is distributed as a bare file
        (into / "diagnostic").mkdir(exist_ok=True)
        (into / "diagnostic" / "diagnostic.tsv").symlink_to((glue_dir / "diagnostic.tsv").absolute())
    for child in into.iterdir():  # QNLIv2.zip unpacks to QNLI/
        if child.name == "QNLIv2":
            child.rename(into / "QNLI")
    return into


def main(argv):
    del argv
    from bertjax.tasks import glue

    glue_dir = pathlib.Path(_GLUE_DIR.value)
    if not glue_dir.is_dir():
        raise FileNotFoundError(f"--glue_dir {glue_dir} is not a folder.")
    unknown = sorted(set(_TASKS.value or ()) - set(glue.TASKS))
    if unknown:
        raise ValueError(f"--tasks: unknown task(s) {unknown}; choose from {sorted(glue.TASKS)}.")
    with tempfile.TemporaryDirectory() as scratch:
        source = _extract(glue_dir, pathlib.Path(scratch))
        names = _TASKS.value or [name for name, spec in glue.TASKS.items() if _present(spec, source)]
        if not names:
            raise FileNotFoundError(f"No GLUE task files under {glue_dir}; expected zips or folders such as "
                                    "SST-2/train.tsv.")
        for name in names:
            path = glue.prepare_tfds(glue.TASKS[name], source, _OUTPUT_DIR.value,
                                     skip_malformed=_SKIP_MALFORMED.value)
            print(f"glue/{name}: {path}")


def _present(spec, source: pathlib.Path) -> bool:
    from bertjax.tasks import glue

    try:
        glue.task_folder(spec, source)
    except FileNotFoundError:
        return False
    return True

