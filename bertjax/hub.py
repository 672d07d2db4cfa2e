"""HF Hub model ids (`bert-base-uncased`, `org/name`, `org/name@revision`) as HF folders, found in the local HF
cache and never downloaded: `resolve_hf` turns one into its snapshot folder wherever bertjax takes an HF folder.

A module of its own, importing nothing heavy, so that code taking a path can resolve it before JAX (or
huggingface_hub, imported on the first lookup) is loaded.
"""

import os
import pathlib
import re

# A Hub id: `name` or `org/name` (letters, digits, `_`, `-`, `.`, not leading), optionally `@revision` (a
# branch, tag or commit). One `/` at most before the `@`, so `runs/base/best` reads as a path.
_HUB_ID = re.compile(r"(?P<repo>\w[\w.-]*(?:/\w[\w.-]*)?)(?:@(?P<revision>[\w.-]+(?:/[\w.-]+)*))?")


def hub_id(text: str) -> tuple[str, str | None] | None:
    """`text` as (repo id, revision or None) where it is shaped like a Hub id; None where it reads as a path
    (`./x`, `/x`, `~/x`, `.x`, `x.py`, `a/b/c`)."""
    if text.startswith(("/", "~", ".")) or "./" in text or text.endswith(".py"):
        return None
    match = _HUB_ID.fullmatch(text)
    return (match["repo"], match["revision"]) if match else None


def cache_folder() -> pathlib.Path:
    """The HF hub cache, read from the environment now: huggingface_hub.constants reads it once, at import,
    which misses a variable set later (by a test, or a notebook)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return pathlib.Path(os.path.expandvars(explicit)).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return pathlib.Path(os.path.expandvars(home)).expanduser() / "hub"


def _fetch_advice(repo: str, revision: str | None) -> str:
    option = f" --revision {revision}" if revision else ""
    return (f"fetch it with `hf download {repo}{option}` on a machine with internet (and copy the cache here), "
            "or set HF_HOME or HF_HUB_CACHE to the cache that holds it; or pass the HF folder's path.")


def resolve_hf(path_or_id: str | pathlib.Path) -> pathlib.Path:
    """An existing path, as it is (a folder always wins over an id of the same name); else a Hub id's snapshot
    folder in the local HF cache (`cache_folder`). Anything else comes back as a path, for the caller to
    report as missing. Raises FileNotFoundError for an id the cache lacks, saying how to fetch it."""
    path = pathlib.Path(path_or_id)
    parsed = None if path.exists() else hub_id(str(path_or_id))
    if parsed is None:
        return path
    repo, revision = parsed
    cache = cache_folder()
    missing = f"{path_or_id} is neither a folder nor a model in the local HF cache ({cache})"
    try:
        import huggingface_hub
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    except ImportError:
        raise FileNotFoundError(f"{missing}: huggingface_hub is not installed, so the cache cannot be read; "
                                "install it, or pass the HF folder's path.") from None
    try:
        # local_files_only: a lookup in the cache, never a request, with or without HF_HUB_OFFLINE.
        return pathlib.Path(huggingface_hub.snapshot_download(repo, revision=revision, cache_dir=cache,
                                                              local_files_only=True))
    except HFValidationError:
        return path  # not a valid id after all (`a--b`, say): a missing path
    except LocalEntryNotFoundError as error:
        incomplete = type(error).__name__ == "IncompleteSnapshotError"
        detail = f" (its snapshot is incomplete: {error})" if incomplete else ""
        raise FileNotFoundError(f"{missing}{detail}; {_fetch_advice(repo, revision)}") from None
