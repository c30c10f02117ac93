import numpy as np
import pytest

from worldmodel.envs import AreaResize, AtariBatch, EnvSpec


def test_frames_shape_dtype_and_action_meanings(spec):
    envs = AtariBatch(spec, num_envs=2, seed=0)
    frames = envs.reset()
    assert frames.shape == (2, 64, 64, 3) and frames.dtype == np.uint8
    assert envs.full_frames.shape == (2, 210, 160, 3)
    assert envs.action_meanings == ("NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE")
    frames, rewards, terminated, truncated = envs.step(np.zeros(2, np.int64))
    assert rewards.shape == terminated.shape == truncated.shape == (2,)


def test_frames_change_when_the_paddle_moves(spec):
    up, down = (
        (spec_actions := AtariBatch(spec, 1, 0).action_meanings).index("RIGHT"),
        spec_actions.index("LEFT"),
    )
    results = []
    for action in (up, down):
        envs = AtariBatch(spec, 1, seed=3)
        envs.reset()
        for _ in range(15):
            frames, *_ = envs.step(np.array([action]))
        results.append(frames[0].astype(int))
    # The player's paddle lives in the right-hand columns of the frame.
    paddle_columns = np.abs(results[0] - results[1])[:, 54:60]
    assert paddle_columns.sum() > 1000


def test_area_resize_is_exact_area_averaging():
    rng = np.random.default_rng(0)
    # An integer factor is a plain block mean.
    frame = rng.integers(0, 256, (128, 96, 3)).astype(np.uint8)
    blocks = frame.reshape(64, 2, 48, 2, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(AreaResize((128, 96), (64, 48))(frame) - np.rint(blocks)).max() <= 1
    # A fractional factor keeps a small bright object's total light (a 2x4 "ball").
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[101:105, 81:83] = 255
    small = AreaResize((210, 160), (64, 64))(frame).astype(np.float64)
    cell_area = (210 / 64) * (160 / 64)
    assert abs(small.sum() * cell_area - frame.sum(dtype=np.float64)) < 0.02 * frame.sum()
    flat = np.full((210, 160, 3), 77, np.uint8)
    assert (AreaResize((210, 160), (64, 64))(flat) == 77).all()


def test_unknown_game_id_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown game id 'ALE/Pnog-v5'"):
        EnvSpec(game_id="ALE/Pnog-v5").make()
