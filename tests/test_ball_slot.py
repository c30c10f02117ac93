"""The ball slot against the emulator: it reads the ball's full-screen position off real
64x64 frames as the RAM has it, draws it back exactly, and the tokenizer keeps it out of
its codes."""

import numpy as np
import pytest
import torch

from worldmodel.envs import pong_ram
from worldmodel.envs.atari import AtariBatch, EnvSpec
from worldmodel.envs.policies import TrackerPolicy
from worldmodel.envs.pong_screen import (
    BACKGROUND,
    BALL_X_OFFSET,
    BALL_Y_OFFSET,
    PLAYFIELD_ROWS,
    WHITE,
)
from worldmodel.envs.resize import AreaResize
from worldmodel.frames import to_float_frames, to_uint8_frames
from worldmodel.models.ball_slot import COLUMNS, ROWS, BallSlot
from worldmodel.models.delta_tokenizer import DeltaTokenizer, DeltaTokenizerConfig

TINY = dict(channels=8, latent_channels=16, context_channels=4, num_codes=32, code_dim=8)


@pytest.fixture(scope="module")
def play(spec: EnvSpec) -> dict[str, np.ndarray]:
    """~600 frames of tracker play: 64x64 frames, the same without the ball, and the RAM."""
    envs = AtariBatch(spec, 6, 3)
    policy = TrackerPolicy(envs.action_meanings, 6, 3)
    frames = envs.reset()
    out: dict[str, list[np.ndarray]] = {"frames": [], "without_ball": [], "ram": []}
    for _ in range(100):
        frames, _, terminated, truncated = envs.step(policy.act(frames, envs.ram))
        policy.episode_started(terminated | truncated)
        full = envs.full_frames.copy()
        field = full[:, slice(*PLAYFIELD_ROWS)]  # the ball is the only white in the field
        field[(field == WHITE.astype(np.uint8)).all(-1)] = BACKGROUND.astype(np.uint8)
        out["frames"].append(frames.copy())
        out["without_ball"].append(AreaResize(full.shape[1:3], (64, 64))(full))
        out["ram"].append(envs.ram.copy())
    envs.close()
    return {k: np.concatenate(v) for k, v in out.items()}


def test_the_ball_is_located_where_the_ram_has_it(play):
    ball = BallSlot(64).locate(torch.from_numpy(play["frames"])).numpy()
    ram = play["ram"].astype(int)
    in_ram = ram[:, pong_ram.BALL_Y] > 0
    seen = ball[:, 0] < COLUMNS
    assert ((ball[:, 0] < COLUMNS) == (ball[:, 1] < ROWS)).all()
    assert in_ram.sum() > 300 and (seen == in_ram).mean() > 0.99
    both = seen & in_ram
    assert (ball[both, 0] == ram[both, pong_ram.BALL_X] + BALL_X_OFFSET).all()
    # The RAM's row is the drawn one in 93.5% of frames and one below it otherwise.
    rows = ball[both, 1] - (ram[both, pong_ram.BALL_Y] + BALL_Y_OFFSET)
    assert np.isin(rows, [-1, 0]).all() and (rows == 0).mean() > 0.85


def test_the_located_ball_is_drawn_back_as_the_emulator_draws_it(play):
    slot = BallSlot(64)
    real = torch.from_numpy(play["frames"])
    cover = slot.cover(slot.locate(real))
    without = to_float_frames(torch.from_numpy(play["without_ball"]))
    drawn = to_uint8_frames(slot.draw(without, cover)).int()
    worst = (drawn - real.int()).abs().flatten(1).amax(1)
    assert (worst <= 1).float().mean() > 0.97  # uint8 rounding; the rest one row off
    erased = to_uint8_frames(slot.erase(to_float_frames(real), cover)).int()
    worst = (erased - torch.from_numpy(play["without_ball"]).int()).abs().flatten(1).amax(1)
    assert (worst <= 1).float().mean() > 0.97


def test_the_tokenizer_codes_the_frame_without_its_ball_and_draws_it_from_the_ball_tokens(play):
    cfg = DeltaTokenizerConfig(**TINY, ball_slot=True)
    model = DeltaTokenizer(cfg).eval()
    frames = torch.from_numpy(play["frames"][100:140])
    previous, actions = torch.from_numpy(play["frames"][99:139]), torch.zeros(40, dtype=torch.long)
    tokens = model.encode(previous, actions, frames)
    assert tokens.shape == (40, cfg.frame_tokens) == (40, 6)
    columns, rows = cfg.ball_ids
    assert ((tokens[:, 0] >= columns) & (tokens[:, 0] <= columns + COLUMNS)).all()
    assert ((tokens[:, 1] >= rows) & (tokens[:, 1] < cfg.vocab_size)).all()
    assert (tokens[:, 2:] < cfg.num_codes).all()
    # The codes do not see the ball: the frames without it get the same codes.
    without = torch.from_numpy(play["without_ball"][100:140])
    assert (model.encode(previous, actions, without)[:, 2:] == tokens[:, 2:]).float().mean() > 0.95
    # The drawing is the frame without a ball with the ball drawn where its tokens say.
    no_ball = tokens.clone()
    no_ball[:, :2] = torch.tensor([columns + COLUMNS, rows + ROWS])
    moved = tokens.clone()
    moved[:, :2] = torch.tensor([columns + 40, rows + 100])
    base = model.decode(previous, actions, no_ball)
    inside = (base > 0) & (base < 1)  # not clamped
    for ball_tokens in (tokens, moved):
        cover = model.ball.cover(ball_tokens[:, :2] - torch.tensor(cfg.ball_ids))
        expected = model.ball.draw(base, cover).clamp(0, 1)
        drawn = model.decode(previous, actions, ball_tokens)
        assert torch.allclose(drawn[inside], expected[inside], atol=1e-5)
    # An id out of the ball's range (a world model's slip) draws no ball.
    slipped = tokens.clone()
    slipped[:, 0] = 3
    assert torch.equal(model.decode(previous, actions, slipped), base)


def test_a_ball_slot_with_as_predicted_frames_is_refused():
    with pytest.raises(ValueError, match="ball_slot"):
        DeltaTokenizerConfig(**TINY, ball_slot=True, predicted_tolerance=0.25)
