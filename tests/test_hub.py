"""HF Hub model ids resolve through the local HF cache, offline, wherever an HF folder is taken: a fake cache laid
out as huggingface_hub lays one out (refs/, snapshots/ of symlinks into blobs/) holds a tiny HF BERT."""

import hashlib
import pathlib
import sys

import numpy as np
import pytest
import transformers
from flax import traverse_util

from bertjax import convert, finetune, hub, interop, runs
from bertjax.configs import common
from test_export import _hf_folder

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # a commit hash: 40 hex digits
OLD_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def _cache_model(cache: pathlib.Path, repo_id: str, folder: pathlib.Path, commit: str, refs=("main",)) -> None:
    """`folder`'s files as huggingface_hub caches a download of `repo_id` at `commit`: the contents in blobs/,
    named by hash, linked from snapshots/COMMIT/; each ref in refs/ holding the commit."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        blob = storage / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.write_bytes(file.read_bytes())
        (snapshot / file.name).symlink_to(pathlib.Path("../../blobs") / blob.name)
    (storage / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (storage / "refs" / ref).write_text(commit)


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory):
    """(the cache, the tiny HF folder it holds as `org/tiny` at main and v1, and as `tiny`)."""
    root = tmp_path_factory.mktemp("hub")
    folder = root / "folder"
    folder.mkdir()
    _hf_folder(folder, transformers.BertForSequenceClassification, id2label={0: "no", 1: "yes"})
    cache = root / "cache"
    _cache_model(cache, "org/tiny", folder, COMMIT, refs=("main", "v1"))
    _cache_model(cache, "org/tiny", folder, OLD_COMMIT, refs=())
    _cache_model(cache, "tiny", folder, COMMIT)
    return cache, folder


@pytest.fixture(autouse=True)
def use_cache(hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache[0]))  # set after huggingface_hub's import: read at call time


def _snapshot(cache, repo_id, commit=COMMIT):
    return cache / ("models--" + repo_id.replace("/", "--")) / "snapshots" / commit


def _flat(params):
    return traverse_util.flatten_dict(params)


def test_import_hf_from_a_hub_id_converts_as_the_folder_does(hf_cache, tmp_path):
    cache, folder = hf_cache
    from_folder = interop.import_hf(folder, tmp_path / "from_folder")
    from_id = interop.import_hf("org/tiny", tmp_path / "from_id")
    assert from_id["hub_id"] == "org/tiny" and "hub_id" not in from_folder
    assert pathlib.Path(from_id["source"]) == _snapshot(cache, "org/tiny").resolve()
    assert {**from_id, "source": None, "hub_id": None} == {**from_folder, "source": None, "hub_id": None}
    assert ((tmp_path / "from_id" / "tokenizer.json").read_text()
            == (tmp_path / "from_folder" / "tokenizer.json").read_text())
    expected, got = _flat(runs.load_run(tmp_path / "from_folder")[2]), _flat(runs.load_run(tmp_path / "from_id")[2])
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg="/".join(name))


def test_revisions_and_names_without_an_org_resolve(hf_cache):
    cache, _ = hf_cache
    here = _snapshot(cache, "org/tiny").resolve()
    assert hub.resolve_hf("org/tiny") == here
    assert hub.resolve_hf("org/tiny@v1") == here  # a tag
    assert hub.resolve_hf(f"org/tiny@{OLD_COMMIT}") == _snapshot(cache, "org/tiny", OLD_COMMIT).resolve()
    assert hub.resolve_hf("tiny") == _snapshot(cache, "tiny").resolve()


def test_hf_home_names_the_cache_when_hf_hub_cache_is_unset(hf_cache, tmp_path, monkeypatch):
    cache, _ = hf_cache
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "hub").symlink_to(cache)
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.cache_folder() == tmp_path / "home" / "hub"
    assert hub.resolve_hf("org/tiny") == _snapshot(cache, "org/tiny").resolve()


def test_an_id_the_cache_lacks_says_where_it_looked_and_how_to_fetch_it(hf_cache, monkeypatch):
    cache, _ = hf_cache
    with pytest.raises(FileNotFoundError, match=r"org/absent is neither a folder nor a model in the local HF "
                                                 rf"cache \({cache}\).*`hf download org/absent`.*HF_HUB_CACHE"):
        hub.resolve_hf("org/absent")
    with pytest.raises(FileNotFoundError, match="`hf download org/tiny --revision v9`"):
        hub.resolve_hf("org/tiny@v9")
    with pytest.raises(FileNotFoundError, match="nor a model in the local HF cache"):
        interop.import_hf("org/absent", cache.parent / "never")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if it were not installed
    with pytest.raises(FileNotFoundError, match="huggingface_hub is not installed"):
        hub.resolve_hf("org/absent")


def test_an_existing_path_wins_and_paths_are_never_looked_up(hf_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pathlib.Path("org/tiny").mkdir(parents=True)
    assert hub.resolve_hf("org/tiny") == pathlib.Path("org/tiny")
    for path in ("./tiny", "runs/org/tiny", "~/tiny", ".tiny", "/tiny", "tiny.py"):
        assert hub.resolve_hf(path) == pathlib.Path(path), path
    assert hub.hub_id("org/tiny@v1") == ("org/tiny", "v1") and hub.hub_id("a/b/c") is None


def test_init_checkpoint_takes_a_hub_id(hf_cache):
    cache, folder = hf_cache
    config = common.get_config()
    config.train.init_checkpoint = "org/tiny"
    finetune.resolve_from_checkpoint(config)
    assert config.model.hidden_size == 32 and config.train.init_checkpoint == "org/tiny"
    assert pathlib.Path(config.data.tokenizer).parent == _snapshot(cache, "org/tiny").resolve()
    model_config = convert.load_hf_bert(folder)[0]
    abstract = convert.abstract_params(model_config, "sequence_classification", 2)
    expected, got = _flat(runs.load_params(folder, abstract)), _flat(runs.load_params("org/tiny", abstract))
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg="/".join(name))


def test_bertjax_load_takes_a_hub_id(hf_cache):
    import bertjax

    predictor = bertjax.load("org/tiny")  # no call: nothing compiles
    assert predictor.head == "sequence_classification" and predictor.labels == ["no", "yes"]
