"""The learned game over context-aware tokens: the same API as IRIS's, its cached generation
is what the whole-sequence model says, the window slides past the context, and the frame it
draws comes from the one before."""

import pytest
import torch

from worldmodel.bundle import load_bundle, save_bundle
from worldmodel.delta_engine import DeltaGame
from worldmodel.engine import LearnedGame
from worldmodel.envs.atari import EnvSpec
from worldmodel.frames import to_uint8_frames
from worldmodel.models.ball_motion import APPEARS, CLASSES, MAX_STEP
from worldmodel.models.ball_slot import COLUMNS, ROWS
from worldmodel.models.delta_tokenizer import DeltaTokenizer, DeltaTokenizerConfig
from worldmodel.models.delta_world_model import DeltaWorldModel, DeltaWorldModelConfig

TOKENIZER = dict(channels=8, latent_channels=16, num_codes=32, code_dim=8, context_channels=4)
WORLD_MODEL = dict(num_codes=32, max_frames=4, n_layers=2, n_heads=2, d_model=32, frame_channels=4)


def models(seed: int = 0) -> tuple[DeltaTokenizer, DeltaWorldModel]:
    torch.manual_seed(seed)
    tokenizer = DeltaTokenizer(DeltaTokenizerConfig(**TOKENIZER)).eval()
    return tokenizer, DeltaWorldModel(DeltaWorldModelConfig(**WORLD_MODEL)).eval()


def as_predicted_models(seed: int = 0) -> tuple[DeltaTokenizer, DeltaWorldModel]:
    """Two context frames and the "as predicted" token (id 32 of 33)."""
    torch.manual_seed(seed)
    cfg = DeltaTokenizerConfig(**TOKENIZER, context_frames=2, predicted_tolerance=0.3)
    world_model = DeltaWorldModel(DeltaWorldModelConfig(**{**WORLD_MODEL, "num_codes": 33}))
    return DeltaTokenizer(cfg).eval(), world_model.eval()


def slot_models(seed: int = 0) -> tuple[DeltaTokenizer, DeltaWorldModel]:
    """With the ball and score slots (the score change predicted by the world model's head)."""
    torch.manual_seed(seed)
    tokenizer = DeltaTokenizer(
        DeltaTokenizerConfig(**TOKENIZER, ball_slot=True, score_slot=True)
    ).eval()
    sizes = {"num_codes": tokenizer.cfg.vocab_size, "tokens_per_frame": 6, "score_change": True}
    return tokenizer, DeltaWorldModel(DeltaWorldModelConfig(**{**WORLD_MODEL, **sizes})).eval()


def motion_models(seed: int = 0) -> tuple[DeltaTokenizer, DeltaWorldModel]:
    """With the ball slot and the world model's ball motion."""
    torch.manual_seed(seed)
    tokenizer = DeltaTokenizer(DeltaTokenizerConfig(**TOKENIZER, ball_slot=True)).eval()
    sizes = {
        "num_codes": tokenizer.cfg.vocab_size,
        "tokens_per_frame": 6,
        "ball_ids": tokenizer.cfg.ball_ids,
        "ball_motion": True,
    }
    return tokenizer, DeltaWorldModel(DeltaWorldModelConfig(**{**WORLD_MODEL, **sizes})).eval()


def context(b: int = 2, c: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (b, c, 64, 64, 3), dtype=torch.uint8, generator=g)
    return frames, torch.randint(0, 6, (b, c - 1), generator=g)


def whole_sequence_tokens(game: DeltaGame) -> torch.Tensor:
    """The greedy tokens of the game's last step, as the model says them over its whole
    context at once (no cache): what cached generation must reproduce."""
    wm = game.world_model
    refs = wm.block_references(game.tokens)
    sequence = wm.sequence(game.embeddings[:, :-1], game.actions, game.tokens, refs)
    return wm.heads(wm.transformer(sequence), refs).token_logits[:, -1].argmax(-1)


def test_learned_game_plays_a_delta_world_model_with_the_same_api():
    game = LearnedGame(*models(), seed=0)
    assert isinstance(game, DeltaGame)
    frames, actions = context()
    shown = game.reset(frames, actions)
    assert torch.equal(shown, frames[:, -1])  # the real last frame, as the decoder gets it
    frame, reward, end = game.step(torch.tensor([0, 3]))
    assert frame.shape == (2, 64, 64, 3) and frame.dtype == torch.uint8
    assert reward.shape == (2,) and end.dtype == torch.bool
    assert game.forwards == 1 + 4  # the context in one forward, then K a step


@pytest.mark.parametrize("design", [models, as_predicted_models, motion_models])
def test_cached_greedy_generation_is_what_the_whole_sequence_says_past_the_window(design):
    game = LearnedGame(*design(), greedy=True, keep_frames=2)
    game.reset(*context())
    lengths = []
    with torch.no_grad():
        for t in range(7):  # max_frames 4: the window slides twice
            game.step(torch.tensor([t % 6, (t + 1) % 6]))
            lengths.append(game.embeddings.shape[1])
            assert torch.equal(game.tokens[:, -1], whole_sequence_tokens(game)), t
    # max_frames - 1 whole steps (a training segment's last block never predicts tokens, so
    # no step samples there) and the newest frame; after a slide the 2 kept and the new one
    assert max(lengths) == 4 and min(lengths) == 3 and lengths.count(3) == 3
    assert game.world_model.cfg.predicting_positions == 3 * game.layout.length


def test_every_input_width_compiles_in_the_background_never_in_the_step():
    # (with both slots: their drawing is compiled into the decode too)
    game = LearnedGame(*slot_models(), greedy=True, compile=True, compile_in_background=True)
    eager = LearnedGame(*slot_models(), greedy=True)
    frames, actions = context(b=1)
    for g in (game, eager):
        g.reset(frames, actions)
    for t in range(3):  # widths 2 and 1 (first step), 3 (the next): three graphs
        game.step(torch.tensor([t]))
        eager.step(torch.tensor([t]))
    assert len(game._extend_and_sample._threads) == 3  # each in a thread of its own
    for part in game._compiled_parts:
        part.wait(timeout=300)
    assert game.compiled and not game.compiling
    for t in range(6):  # past a window slide: no shape is left to compile
        shown = game.step(torch.tensor([t % 6]))[0]
        assert not game.compiling, t
        assert (shown.int() - eager.step(torch.tensor([t % 6]))[0].int()).abs().max() <= 1


def test_an_episode_starts_from_one_frame_without_actions():
    game = LearnedGame(*models(), seed=0)
    frames, _ = context(c=1)
    game.reset(frames[:, 0])
    assert game.step(torch.tensor([1, 2]))[0].shape == (2, 64, 64, 3)


def test_the_drawn_frame_depends_on_the_frame_before_it():
    tokenizer, world_model = models()
    frames, actions = context()
    drawn = []
    for last in (frames[:, -1], 255 - frames[:, -1]):
        game = LearnedGame(tokenizer, world_model, greedy=True)
        game.reset(torch.cat([frames[:, :-1], last[:, None]], 1), actions)
        drawn.append(game.step(torch.tensor([0, 0]))[0])
    assert not torch.equal(*drawn)


def test_with_two_context_frames_a_step_draws_from_the_last_two_and_may_say_as_predicted():
    tokenizer, world_model = as_predicted_models()
    with torch.no_grad():  # a world model sure that every frame goes as predicted
        world_model.token_head[-1].bias[32] = 100.0
    game = LearnedGame(tokenizer, world_model, greedy=True)
    frames, actions = context()
    game.reset(frames, actions)
    step_actions = torch.tensor([0, 3])
    frame = game.step(step_actions)[0]
    assert (game.tokens[:, -1] == 32).all()
    with torch.no_grad():
        expected = tokenizer.draw_as_predicted(frames[:, -2:], step_actions)
    assert torch.equal(frame, to_uint8_frames(expected))
    assert torch.equal(game.recent, torch.stack([frames[:, -1], frame], 1))
    second = game.step(step_actions)[0]
    with torch.no_grad():
        expected = tokenizer.draw_as_predicted(torch.stack([frames[:, -1], frame], 1), step_actions)
    assert torch.equal(second, to_uint8_frames(expected))


def test_with_ball_motion_the_dreamed_ball_keeps_the_step_its_motion_logits_favour():
    tokenizer, world_model = motion_models()
    first_column, first_row = tokenizer.cfg.ball_ids
    with torch.no_grad():  # a model sure that a ball appears at (40, 100), then steps (4, -8)
        world_model.token_head[-1].bias[[first_column + 40, first_row + 100]] += 5.0
        motion = world_model.motion.head[-1].bias
        motion.zero_()
        motion[APPEARS] = motion[CLASSES + APPEARS] = 50.0
        motion[MAX_STEP + 4] = motion[CLASSES + MAX_STEP - 8] = 100.0
    game = LearnedGame(tokenizer, world_model, greedy=True, keep_frames=2)
    game.reset(*context())
    firsts = torch.tensor([first_column, first_row])
    before = game.tokens[:, -1, :2] - firsts  # the context's last ball (noise: somewhere)
    step = torch.tensor([4, -8])
    balls = []
    for t in range(7):  # past a window slide (max_frames 4)
        game.step(torch.tensor([t % 6, 0]))
        balls.append(game.tokens[:, -1, :2] - firsts)
    balls = torch.stack(balls, 1)
    seen = (before < torch.tensor([COLUMNS, ROWS])).all(-1, keepdim=True)
    assert (balls[:, 0] == torch.where(seen, before + step, torch.tensor([40, 100]))).all()
    assert (balls.diff(dim=1) == step).all()  # also after the slide


def test_seeded_sampling_repeats_and_speculation_is_refused():
    runs = []
    for _ in range(2):
        game = LearnedGame(*models(), seed=7, temperature=1.0)
        game.reset(*context())
        runs.append(torch.stack([game.step(torch.tensor([2, 4]))[0] for _ in range(3)]))
    assert torch.equal(*runs)
    with pytest.raises(ValueError, match="speculative"):
        LearnedGame(*models(), speculative=True)


def test_a_delta_bundle_records_its_kind_and_plays_after_loading(tmp_path):
    tokenizer, world_model = models()
    path = save_bundle(tmp_path / "b.ckpt", tokenizer, world_model, EnvSpec(), ("NOOP",) * 6)
    bundle = load_bundle(path)
    assert bundle.kind == "delta" and isinstance(bundle.world_model, DeltaWorldModel)
    frames, actions = context()
    shown = []
    for tok, wm in ((tokenizer, world_model), (bundle.tokenizer, bundle.world_model)):
        game = LearnedGame(tok, wm, greedy=True)
        game.reset(frames, actions)
        shown.append(game.step(torch.tensor([1, 1]))[0])
    assert torch.equal(*shown)
