import functools

import numpy as np
import pytest
import torch

from worldmodel.data.datamodule import StreamingDataModule, StreamingDataset, derive_seed
from worldmodel.data.held_out import HeldOut
from worldmodel.data.segments import Segments
from worldmodel.envs.policies import TrackerPolicy


def make_dm(spec, tmp_path, **overrides) -> StreamingDataModule:
    settings = dict(
        mode="frames",
        batch_size=4,
        seq_len=6,
        num_envs=2,
        warmup_steps=20,
        num_workers=0,
        val_dir=str(tmp_path / "val"),
        held_out=HeldOut(episodes=1, max_steps=60),
        seed=7,
    )
    settings.update(overrides)
    tracker = functools.partial(TrackerPolicy)
    return StreamingDataModule(spec, tracker, **settings)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_batches_for_both_stages(spec, tmp_path, num_workers):
    frames_dm = make_dm(spec, tmp_path, num_workers=num_workers)
    frames = next(iter(frames_dm.train_dataloader()))
    assert frames.shape == (4, 64, 64, 3) and frames.dtype == torch.uint8

    seg_dm = make_dm(spec, tmp_path, mode="segments", num_workers=num_workers)
    seg = next(iter(seg_dm.train_dataloader()))
    assert isinstance(seg, Segments) and seg.frames.shape == (4, 6, 64, 64, 3)
    for key in ("actions", "rewards", "terminated", "truncated", "mask"):
        assert getattr(seg, key).shape == (4, 6), key
    assert seg.actions.dtype == torch.int64 and seg.mask.dtype == torch.bool and seg.tokens is None

    val = list(seg_dm.val_dataloader())
    assert all(isinstance(batch, Segments) for batch in val)
    assert val[0].frames.shape == (4, 6, 64, 64, 3)  # whole batches, the last one may be short
    assert sum(len(batch) for batch in val) == len(seg_dm._val)


def test_same_seed_same_first_batch(spec, tmp_path):
    a = next(iter(make_dm(spec, tmp_path, mode="segments").train_dataloader()))
    b = next(iter(make_dm(spec, tmp_path, mode="segments").train_dataloader()))
    for key in ("frames", "actions", "rewards", "terminated", "truncated", "mask"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    c = next(iter(make_dm(spec, tmp_path, mode="segments", seed=8).train_dataloader()))
    assert not torch.equal(a.frames, c.frames)


def test_ranks_and_workers_collect_different_episodes(spec, tmp_path):
    seeds = {derive_seed(7, rank, worker) for rank in range(4) for worker in range(4)}
    assert len(seeds) == 16
    batches = []
    for rank in (0, 1):
        dataset = StreamingDataset(
            spec,
            functools.partial(TrackerPolicy),
            mode="segments",
            batch_size=4,
            seq_len=30,
            num_envs=2,
            buffer_steps=1000,
            warmup_steps=60,
            collect_steps_per_batch=1,
            seed=7,
            rank=rank,
        )
        batches.append(next(iter(dataset)).actions.numpy())
    assert not np.array_equal(batches[0], batches[1])


def test_validation_set_is_written_once_and_reused(spec, tmp_path):
    dm = make_dm(spec, tmp_path)
    first = dm.held_out()
    files = sorted((tmp_path / "val").rglob("*.npz"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    second = make_dm(spec, tmp_path).held_out()
    assert files[0].stat().st_mtime_ns == mtime
    assert np.array_equal(first[0].frames, second[0].frames)


def test_training_from_an_episode_directory(spec, tmp_path):
    make_dm(spec, tmp_path).prepare_data()
    (episodes_dir,) = {p.parent for p in (tmp_path / "val").rglob("*.npz")}
    dm = make_dm(spec, tmp_path, num_envs=0, episodes_dir=str(episodes_dir))
    with pytest.raises(FileNotFoundError, match="no episode files"):
        empty = make_dm(spec, tmp_path, num_envs=0, episodes_dir=str(tmp_path / "nothing"))
        next(iter(empty.train_dataloader()))
    frames = next(iter(dm.train_dataloader()))
    assert frames.shape == (4, 64, 64, 3)


def test_collected_episodes_can_be_saved(spec, tmp_path):
    dm = make_dm(spec, tmp_path, save_dir=str(tmp_path / "saved"), warmup_steps=0)
    capped = type(spec)(**{**spec.to_dict(), "max_episode_steps": 30})
    dm.env = capped
    it = iter(dm.train_dataloader())
    for _ in range(35):
        next(it)
    assert len(list((tmp_path / "saved").glob("*.npz"))) == 2
