import numpy as np
import pytest

from worldmodel.data.buffer import ReplayBuffer
from worldmodel.data.episode import CorruptEpisodeError, Episode
from worldmodel.data.store import EpisodeStore


def make_episode(length: int, tag: int = 0, seed: int = 0) -> Episode:
    rng = np.random.default_rng(seed)
    terminated = np.zeros(length, bool)
    terminated[-1] = True
    return Episode(
        frames=rng.integers(0, 256, (length, 8, 8, 3), dtype=np.uint8),
        actions=np.full(length, tag, np.int64),
        rewards=rng.choice([-1.0, 0.0, 1.0], length).astype(np.float32),
        terminated=terminated,
        truncated=np.zeros(length, bool),
    )


def test_episode_file_round_trips_exactly(tmp_path):
    episode = make_episode(37)
    path = episode.save(tmp_path / "ep.npz")
    loaded = Episode.load(path)
    for name in ("frames", "actions", "rewards", "terminated", "truncated"):
        original, back = getattr(episode, name), getattr(loaded, name)
        assert back.dtype == original.dtype and np.array_equal(back, original)
    assert [p.name for p in tmp_path.iterdir()] == ["ep.npz"]  # no temp file left behind


def test_corrupt_episode_file_is_skipped_with_a_warning_naming_it(tmp_path):
    store = EpisodeStore(tmp_path)
    store.save(make_episode(10), "good")
    bad = store.save(make_episode(10, seed=1), "bad")
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # truncated mid-write
    with pytest.warns(UserWarning, match="bad.npz"):
        loaded = list(store.load_all())
    assert len(loaded) == 1
    with pytest.raises(CorruptEpisodeError, match="bad.npz"):
        Episode.load(bad)


def test_empty_episode_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no episode files"):
        list(EpisodeStore(tmp_path).load_all())


def test_segments_never_cross_episode_boundaries():
    buffer = ReplayBuffer(num_streams=2, capacity=50, frame_shape=(8, 8, 3))
    # Stream 0 holds episodes tagged 1, 2, 3 back to back; the ring wraps over episode 1.
    for tag, length in ((1, 20), (2, 7), (3, 30)):
        buffer.add_episode(0, make_episode(length, tag=tag, seed=tag))
    buffer.add_episode(1, make_episode(12, tag=4))
    segments = buffer.sample_segments(500, length=10, rng=np.random.default_rng(0))
    mask, actions = segments["mask"], segments["actions"]
    assert mask[:, 0].all()
    for row_mask, row_actions in zip(mask, actions, strict=True):
        assert len(set(row_actions[row_mask])) == 1  # one episode per segment
        assert (row_actions[~row_mask] == 0).all()  # padding is zeros
        n_valid = row_mask.sum()
        assert row_mask[:n_valid].all()  # padding only at the end
    assert (segments["frames"][~mask] == 0).all()
    assert set(np.unique(actions[mask])) <= {1, 2, 3, 4}
    # Episode 1 was partly overwritten: what is left of it is still sampled alone.
    assert buffer.size == 50 + 12
