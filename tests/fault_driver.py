"""tools/pretrain.py as a user runs it, for the fault-injection tests, with one test hook:
`--pause_before_commit=STEP` stops the background write of checkpoint STEP after all its files are in the
temporary directory and just before orbax renames it into place, and creates `WORKDIR/PAUSED`, so a test
can kill the process at the most delicate moment of a save.

    python tests/fault_driver.py [--pause_before_commit=STEP] --config=... --workdir=...
"""

import pathlib
import runpy
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def pause_before_commit(step: int, workdir: pathlib.Path) -> None:
    from orbax.checkpoint._src.path import atomicity

    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def paused_finalize(self):
        final = pathlib.Path(str(self._final_path))
        if final.name == str(step) and final.parent.name == "checkpoints":
            (workdir / "PAUSED").write_text(str(self.get()))
            time.sleep(600)  # the test kills the process here
        return await finalize(self)

    atomicity.AtomicRenameTemporaryPath.finalize = paused_finalize


def main() -> None:
    argv = sys.argv[1:]
    workdir = pathlib.Path(next(arg.split("=", 1)[1] for arg in argv if arg.startswith("--workdir=")))
    for arg in list(argv):
        if arg.startswith("--pause_before_commit="):
            argv.remove(arg)
            pause_before_commit(int(arg.split("=", 1)[1]), workdir)
    sys.argv = [str(ROOT / "tools" / "pretrain.py"), *argv]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
