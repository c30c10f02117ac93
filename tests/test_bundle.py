import os

import pytest
import torch

from worldmodel.bundle import BundleError, load_bundle
from worldmodel.lit.checkpoints import load_tokenizer


class RunsCodeOnLoad:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"format": "worldmodel-bundle", "payload": RunsCodeOnLoad(str(marker))}, evil)
    with pytest.raises(BundleError, match="refused to load") as refused:
        load_bundle(evil)
    assert not marker.exists()
    assert "weights_only" not in str(refused.value)  # no advice to switch the check off


@pytest.mark.parametrize("content", [os.urandom(4096), b"# worldmodel\n\nA README.\n", b""])
def test_a_file_that_is_no_checkpoint_says_so(tmp_path, content):
    path = tmp_path / "bundle.ckpt"
    path.write_bytes(content)
    with pytest.raises(BundleError, match="not a checkpoint") as err:
        load_bundle(path)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)


def test_bad_files_give_one_clear_line(tmp_path, smoke_run):
    with pytest.raises(BundleError, match="no such file"):
        load_bundle(tmp_path / "missing.ckpt")

    good = (smoke_run / "bundle.ckpt").read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(truncated)

    lightning = smoke_run / "world_model" / "checkpoints" / "last.ckpt"
    with pytest.raises(BundleError, match="Lightning training checkpoint"):
        load_bundle(lightning)

    # The tokenizer stage's checkpoint is a valid source of a tokenizer, though.
    tokenizer = load_tokenizer(smoke_run / "tokenizer" / "checkpoints" / "last.ckpt")
    frames, actions = torch.zeros(2, 64, 64, 3, dtype=torch.uint8), torch.zeros(2).long()
    assert tokenizer.encode(frames, actions, frames).shape == (2, tokenizer.frame_tokens)
