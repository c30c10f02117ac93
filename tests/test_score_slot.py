"""The score slot against the emulator: the font draws the digits the emulator draws, a
score is read off real 64x64 frames as the RAM has it, the score rows are drawn back from
the frame before and who scored, and the tokenizer and the learned game carry the score as
that one token."""

import dataclasses

import numpy as np
import pytest
import torch

from worldmodel.delta_engine import DeltaGame
from worldmodel.envs.atari import AtariBatch, EnvSpec
from worldmodel.envs.policies import RandomPolicy
from worldmodel.envs.pong_screen import BACKGROUND, MAX_SCORE, SCORE_ROWS, score_ink
from worldmodel.frames import to_float_frames
from worldmodel.models.delta_tokenizer import DeltaTokenizer, DeltaTokenizerConfig
from worldmodel.models.delta_world_model import DeltaWorldModel, DeltaWorldModelConfig
from worldmodel.models.score_slot import NOBODY, OPPONENT, PLAYER, SIDES, ScoreSlot

TINY = dict(channels=8, latent_channels=16, context_channels=4, num_codes=32, code_dim=8)
SCORE_RAM = (13, 14)  # opponent, player: the RAM's scores (the digits follow a step later)


@pytest.fixture(scope="module")
def play(spec: EnvSpec) -> dict[str, np.ndarray]:
    """1,000 steps of random play on 2 envs (the opponent scores every ~35 steps; an
    episode ends at 21 and starts again): full and 64x64 frames, and the scores in RAM."""
    envs = AtariBatch(spec, 2, 5)
    policy = RandomPolicy(envs.action_meanings, 2, 5)
    frames = envs.reset()
    out: dict[str, list[np.ndarray]] = {"frames": [], "full": [], "scores": []}
    for _ in range(1000):
        frames, *_ = envs.step(policy.act(frames, envs.ram))
        out["frames"].append(frames.copy())
        out["full"].append(envs.full_frames[:, : SCORE_ROWS[1]].copy())
        out["scores"].append(envs.ram[:, SCORE_RAM].astype(int))
    envs.close()
    return {k: np.stack(v, 1) for k, v in out.items()}  # (envs, T, ...)


def test_the_font_draws_the_digits_the_emulator_draws(play):
    digits = ~(play["full"] == BACKGROUND.astype(np.uint8)).all(-1)  # (envs, T, 24, 160)
    digits[..., 0, :8] = False  # the HMOVE bar
    scores = play["scores"]
    palette = (play["full"][:, :, 22, 80] == BACKGROUND).all(-1)  # not an episode's first
    settled = (scores[:, 1:] == scores[:, :-1]).all(-1) & palette[:, 1:]
    checked = set()
    for env, t in zip(*np.nonzero(settled), strict=True):
        t += 1  # a step after the RAM's last change: the digits show it
        drawn = score_ink(SIDES[0], scores[env, t, 0]) | score_ink(SIDES[1], scores[env, t, 1])
        assert (drawn == digits[env, t]).all(), (env, t, scores[env, t])
        checked.add(tuple(scores[env, t]))
    assert len({s[0] for s in checked}) == MAX_SCORE  # the opponent's 0-20, tens and units


def test_a_score_is_read_as_the_ram_has_it_and_drawn_back_from_the_frame_before(play):
    slot = ScoreSlot(64)
    frames = to_float_frames(torch.from_numpy(play["frames"]))  # (envs, T, 3, 64, 64)
    read = slot.read(frames.flatten(0, 1)).view(*frames.shape[:2], 2).numpy()
    ram = play["scores"]
    readable = (read >= 0).all(-1)
    assert readable.mean() > 0.99  # not an episode's first frame (another palette)
    # The digits show the RAM's score, or the one before for a step after a point.
    shown = (read[:, 1:] == ram[:, 1:]) | (read[:, 1:] == ram[:, :-1])
    assert shown.all(-1)[readable[:, 1:]].all()

    previous, current = frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1)
    changes = slot.change(previous, current)
    gained = np.diff(read, axis=1).reshape(-1, 2)
    both = (readable[:, 1:] & readable[:, :-1]).reshape(-1)
    expected = np.where(gained[:, 0] == 1, OPPONENT, np.where(gained[:, 1] == 1, PLAYER, NOBODY))
    assert (changes.numpy()[both] == expected[both]).all() and (
        expected[both] == OPPONENT
    ).sum() > 20
    decoded = torch.rand_like(current)  # what a decoder drew: anything
    drawn, rows = slot.draw(previous, decoded, changes), slot.rows
    error = (drawn[:, :, :rows] - current[:, :, :rows]).abs().flatten(1).amax(1)
    # Exact to uint8 rounding, also 0:0 after an episode's first frame (which cannot be read),
    # except in a new episode's first frame (drawn here from the last of the episode before).
    opening = torch.from_numpy(~readable[:, :-1].reshape(-1))
    in_episode = torch.from_numpy(readable[:, 1:].reshape(-1))
    assert opening.sum() >= 2 and (error[in_episode] <= 1 / 255).all()
    assert torch.equal(drawn[:, :, rows:], decoded[:, :, rows:])


def test_the_tokenizer_carries_who_scored_as_its_first_token(play):
    cfg = DeltaTokenizerConfig(**TINY, ball_slot=True, score_slot=True)
    model = DeltaTokenizer(cfg).eval()
    assert cfg.frame_tokens == 7 and cfg.vocab_size == 32 + 161 + 211 + 3
    frames = torch.from_numpy(play["frames"][0])
    previous, following = frames[:-1], frames[1:]
    actions = torch.zeros(len(previous), dtype=torch.long)
    tokens = model.encode(previous, actions, following)
    slot = model.score
    expected = slot.change(to_float_frames(previous), to_float_frames(following))
    assert torch.equal(tokens[:, 0] - cfg.score_ids, expected) and (expected == OPPONENT).any()
    # The ball still comes from tokens 1-2: without them only the ball's pixels change.
    no_ball = tokens.clone()
    no_ball[:, 1:3] = model.ball_first_ids + model.ball.none
    moved = model.decode(previous, actions, tokens) - model.decode(previous, actions, no_ball)
    where = model.ball.cover(tokens[:, 1:3] - model.ball_first_ids)[:, 0] > 0
    assert moved.abs().amax(1).gt(1e-6).le(where).all() and moved.abs().sum() > 0
    # Who scored is all the score rows draw from: "the player scored" adds the player's point.
    readable = (slot.read(to_float_frames(previous)) >= 0).all(1)
    nobody, player = tokens.clone(), tokens.clone()
    nobody[:, 0], player[:, 0] = cfg.score_ids + NOBODY, cfg.score_ids + PLAYER
    before = slot.read(to_float_frames(previous))[readable]
    kept = slot.read(model.decode(previous, actions, nobody))[readable]
    raised = slot.read(model.decode(previous, actions, player))[readable]
    assert torch.equal(kept, before)
    assert torch.equal(raised, before + torch.tensor([0, 1]))
    # An id out of the score's range (a world model's slip) draws as nobody scoring.
    slip = nobody.clone()
    slip[:, 0] = 0
    assert torch.equal(
        model.decode(previous, actions, slip), model.decode(previous, actions, nobody)
    )


def test_a_score_slot_with_as_predicted_frames_is_refused():
    with pytest.raises(ValueError, match="score_slot"):
        DeltaTokenizerConfig(**TINY, score_slot=True, predicted_tolerance=0.25)


@pytest.mark.parametrize("start", ["mid_game", "episode_start"])
def test_the_learned_game_scores_when_its_score_head_says_so(play, spec, start):
    torch.manual_seed(0)
    tokenizer = DeltaTokenizer(DeltaTokenizerConfig(**TINY, score_slot=True)).eval()
    cfg = DeltaWorldModelConfig(
        tokens_per_frame=4,
        score_change=True,
        num_codes=tokenizer.cfg.vocab_size,
        max_frames=4,
        n_layers=1,
        n_heads=2,
        d_model=32,
        frame_channels=4,
    )
    world_model = DeltaWorldModel(cfg).eval()
    slot = tokenizer.score
    if start == "mid_game":
        frames = torch.from_numpy(play["frames"][0, 200:203])[None]  # a readable score
        first = slot.read(to_float_frames(frames[:, -1]))
        assert (first >= 0).all()
    else:  # as play starts: from the reset frame, whose score cannot be read; then 0:0
        envs = AtariBatch(spec, 1, 0)
        frames = torch.from_numpy(envs.reset())[:, None].expand(-1, 3, -1, -1, -1)
        envs.close()
        assert (slot.read(to_float_frames(frames[:, -1])) == -1).all()
        first = torch.zeros(1, 2, dtype=torch.long)
    for who, gained in ((NOBODY, (0, 0)), (PLAYER, (0, 1)), (OPPONENT, (1, 0))):
        with torch.no_grad():  # the head's bias decides who scores
            world_model.score_head[-1].bias.copy_(torch.full((3,), -1e3))
            world_model.score_head[-1].bias[who] = 1e3
        game = DeltaGame(tokenizer, world_model, temperature=1.0, seed=0)
        game.reset(frames, torch.zeros(1, 2, dtype=torch.long))
        for step in range(1, 6):  # through a window slide (max_frames 4)
            frame, reward, _ = game.step(torch.zeros(1, dtype=torch.long))
            assert reward.item() == {NOBODY: 0, PLAYER: 1, OPPONENT: -1}[who]  # the same event
            score = slot.read(to_float_frames(frame))
            # (from the reset frame the first step draws 0:0 whole, then the points)
            points = step - (start == "episode_start")
            expected = (first + points * torch.tensor(gained)).clamp(max=MAX_SCORE)
            assert torch.equal(score, expected), (who, step)
        assert game.tokens.shape[-1] == 4  # the score change is no input


def test_a_score_slot_without_a_score_head_is_refused():
    tokenizer = DeltaTokenizer(DeltaTokenizerConfig(**TINY, score_slot=True)).eval()
    cfg = DeltaWorldModelConfig(num_codes=tokenizer.cfg.vocab_size, max_frames=4, d_model=32)
    with pytest.raises(ValueError, match="score slot"):
        DeltaGame(tokenizer, DeltaWorldModel(cfg))
    with pytest.raises(ValueError, match="score changes"):
        scored = DeltaWorldModel(dataclasses.replace(cfg, score_change=True))
        frames = torch.zeros(1, 2, 64, 64, 3, dtype=torch.uint8)
        no = torch.zeros(1, 2, dtype=torch.bool)
        scored.loss(frames, no.long(), torch.zeros(1, 2, 4).long(), no.float(), no, ~no, ~no)
