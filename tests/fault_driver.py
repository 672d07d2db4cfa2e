"""tools/pretrain.py as a user runs it, for the fault-injection tests, with three test hooks:
`--pause_before_commit=STEP` stops the background write of checkpoint STEP after all its files are in the
temporary directory and just before orbax renames it into place, and creates `WORKDIR/PAUSED`, so a test
can kill the process at the most delicate moment of a save; `--limit_file_bytes=N` makes every write past
N bytes of a file fail (EFBIG), as writes to a full disk fail; `--stall_input` makes the reads of the
shards wait while `WORKDIR/STALL` exists, from the third after it appeared (within a batch) on, creating
`WORKDIR/STALLED` when one starts waiting, as reads of a hung network file system wait.

    python tests/fault_driver.py [--pause_before_commit=STEP] [--limit_file_bytes=N] [--stall_input] \
        --config=... --workdir=...
"""

import pathlib
import resource
import runpy
import signal
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


def stall_input(workdir: pathlib.Path) -> None:
    from bertjax.data import shards

    read, reads_while_stalled = shards.DocumentSource.__getitem__, []

    def stalling_read(self, index):
        if (workdir / "STALL").exists():
            reads_while_stalled.append(index)
            if len(reads_while_stalled) > 2:  # two documents of the batch read already: stalled within a batch
                (workdir / "STALLED").write_text(str(index))
                while (workdir / "STALL").exists():
                    time.sleep(0.05)
        return read(self, index)

    shards.DocumentSource.__getitem__ = stalling_read


def main() -> None:
    argv = sys.argv[1:]
    workdir = pathlib.Path(next(arg.split("=", 1)[1] for arg in argv if arg.startswith("--workdir=")))
    for arg in list(argv):
        if arg.startswith("--pause_before_commit="):
            argv.remove(arg)
            pause_before_commit(int(arg.split("=", 1)[1]), workdir)
        if arg.startswith("--limit_file_bytes="):
            argv.remove(arg)
            limit = int(arg.split("=", 1)[1])
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        if arg == "--stall_input":
            argv.remove(arg)
            stall_input(workdir)
    sys.argv = [str(ROOT / "tools" / "pretrain.py"), *argv]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
