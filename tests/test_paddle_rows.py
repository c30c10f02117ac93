"""The paddles' rows the world model reads off a frame: on real frames they agree with the
detector, a paddle one full-frame row lower reads as another row, and a world model with
them adds their embedding to the frame's."""

import numpy as np
import pytest
import torch

from worldmodel.envs.atari import AtariBatch, EnvSpec
from worldmodel.envs.policies import TrackerPolicy
from worldmodel.envs.pong_detector import detect
from worldmodel.envs.pong_screen import BACKGROUND
from worldmodel.frames import to_float_frames
from worldmodel.models.delta_world_model import DeltaWorldModel, DeltaWorldModelConfig
from worldmodel.models.paddle_rows import STEPS_PER_PIXEL, PaddleRows


@pytest.fixture(scope="module")
def frames(spec: EnvSpec) -> np.ndarray:
    """~600 64x64 frames of tracker play."""
    envs = AtariBatch(spec, 6, 3)
    policy = TrackerPolicy(envs.action_meanings, 6, 3)
    seen = [envs.reset()]
    for _ in range(100):
        frame, _, terminated, truncated = envs.step(policy.act(seen[-1], envs.ram))
        policy.episode_started(terminated | truncated)
        seen.append(frame.copy())
    envs.close()
    return np.concatenate(seen)


def test_the_rows_are_the_detectors_paddle_centres(frames):
    rows = PaddleRows(64, 8).rows(to_float_frames(torch.from_numpy(frames))).numpy()
    objects = detect(frames)
    for side, y in enumerate((objects.player_y, objects.opponent_y)):
        visible, read = ~np.isnan(y), rows[:, side] < PaddleRows(64, 8).none
        assert visible.sum() > 300 and (visible == read).mean() > 0.99
        both = visible & read
        assert np.abs(rows[both, side] / STEPS_PER_PIXEL - y[both]).max() <= 0.5
        assert len(np.unique(rows[both, side])) > 20  # the paddles moved


def test_a_paddle_one_full_frame_row_lower_reads_as_another_row(frames):
    objects = detect(frames)
    y = objects.player_y
    moved = np.flatnonzero(np.abs(np.diff(y)) > 0.25)  # a full-frame row is 0.3 at 64x64
    assert len(moved) > 50
    rows = PaddleRows(64, 8).rows(to_float_frames(torch.from_numpy(frames))).numpy()[:, 0]
    assert (rows[moved] != rows[moved + 1]).mean() > 0.99


def test_hidden_paddles_read_as_none_and_the_embedding_tells_rows_apart(frames):
    paddles = PaddleRows(64, 8)
    court = np.broadcast_to(BACKGROUND.astype(np.uint8), (1, 64, 64, 3))
    empty = paddles.rows(to_float_frames(torch.from_numpy(np.ascontiguousarray(court))))
    assert empty.tolist() == [[paddles.none, paddles.none]]
    x = to_float_frames(torch.from_numpy(frames[:64]))
    rows = paddles.rows(x)
    embedded = paddles(x)
    same = (rows[:, None] == rows[None]).all(-1)
    assert torch.equal(torch.cdist(embedded, embedded) < 1e-3, same)


def test_a_world_model_with_paddle_rows_embeds_them_with_the_frame(frames):
    cfg = dict(num_codes=16, max_frames=4, n_layers=1, n_heads=2, d_model=16, frame_channels=4)
    with_rows = DeltaWorldModel(DeltaWorldModelConfig(**cfg, paddle_rows=True))
    plain = DeltaWorldModel(DeltaWorldModelConfig(**cfg))
    with_rows.load_state_dict(plain.state_dict(), strict=False)  # the same CNN
    x = torch.from_numpy(frames[None, :4])
    added = with_rows.embed_frames(x) - plain.embed_frames(x)
    assert torch.allclose(added[0], with_rows.paddles(to_float_frames(x[0])), atol=1e-6)
    assert added.abs().amax() > 0
