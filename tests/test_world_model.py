import dataclasses

import pytest
import torch

from worldmodel.compiled import CompiledOrEager
from worldmodel.engine import LearnedGame
from worldmodel.models.tokenizer import Tokenizer, TokenizerConfig
from worldmodel.models.world_model import WorldModel, WorldModelConfig

from .batches import segments
from .test_tokenizer import TINY


def tiny_world_model(max_frames: int = 4) -> WorldModel:
    torch.manual_seed(0)
    cfg = WorldModelConfig(
        tokens_per_frame=16,
        num_codes=64,
        num_actions=6,
        max_frames=max_frames,
        n_layers=2,
        n_heads=2,
        d_model=32,
        dropout=0.0,
    )
    return WorldModel(cfg).eval()


def test_cached_and_uncached_logits_agree_over_several_frames():
    model = tiny_world_model()
    tokens = torch.randint(0, 64, (2, 3, 16))
    actions = torch.randint(0, 6, (2, 3))
    sequence = model.interleave(tokens, actions)  # 3 frames = 51 tokens
    full = model(sequence).obs_logits

    cache = model.new_cache(2, torch.device("cpu"))
    pieces = [model(sequence[:, :20], cache).obs_logits]  # a prefill
    pieces.append(model(sequence[:, 20:23], cache).obs_logits)  # a chunk after it
    for t in range(23, 40):  # then generation's one-token forwards
        _, logits, new_kv = model.extend(sequence[:, t : t + 1], cache.position, cache.kv)
        cache.append(new_kv)
        pieces.append(logits)
    # and a speculative check: 11 tokens padded to 40 (past the 68-token block: clamped),
    # of which only the first 5 are kept; then the remaining 6.
    padded = torch.nn.functional.pad(sequence[:, 40:], (0, 29))
    _, logits, new_kv = model.extend(padded, cache.position, cache.kv)
    cache.append(new_kv[:, :, :, :, :5])
    pieces.append(logits[:, :5])
    _, logits, new_kv = model.extend(sequence[:, 45:], cache.position, cache.kv)
    cache.append(new_kv)
    pieces.append(logits)
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)
    assert int(cache.position) == cache.length == sequence.shape[1]


def test_a_full_context_refuses_more_tokens():
    model = tiny_world_model(max_frames=2)  # 34 tokens
    cache = model.new_cache(1, torch.device("cpu"))
    model.hidden(torch.zeros(1, 34, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="35 tokens exceeds the block size 34"):
        model.hidden(torch.zeros(1, 1, dtype=torch.long), cache)
    # Generation's forward cannot check its tensor position itself (it clamps, so that a
    # speculative check may pad past the end): the cache refuses to store past its capacity.
    _, _, new_kv = model.extend(torch.zeros(1, 2, dtype=torch.long), cache.position, cache.kv)
    with pytest.raises(ValueError, match="35 tokens exceed the cache's 34"):
        cache.append(new_kv[:, :, :, :, :1])


def test_interleave_offsets_actions_past_the_codebook():
    model = tiny_world_model()
    sequence = model.interleave(torch.zeros(1, 2, 16, dtype=torch.long), torch.tensor([[3, 5]]))
    assert sequence.shape == (1, 34)
    assert sequence[0, 16] == 64 + 3 and sequence[0, 33] == 64 + 5


def make_game(
    max_frames: int = 4,
    keep_frames: int | None = None,
    compile: bool = False,
) -> LearnedGame:
    torch.manual_seed(0)
    tokenizer = Tokenizer(TokenizerConfig(**TINY))
    world_model = tiny_world_model(max_frames)
    return LearnedGame(tokenizer, world_model, seed=0, keep_frames=keep_frames, compile=compile)


def test_engine_steps_a_batch_of_games_past_the_context_length():
    game = make_game(max_frames=4)
    frames = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    first = game.reset(frames)
    assert first.shape == (3, 64, 64, 3) and first.dtype == torch.uint8
    for _ in range(10):  # 2.5x the context
        frames, rewards, ends = game.step(torch.tensor([0, 2, 3]))
        assert frames.shape == (3, 64, 64, 3) and frames.dtype == torch.uint8
        assert rewards.shape == (3,) and set(rewards.tolist()) <= {-1.0, 0.0, 1.0}
        assert ends.dtype == torch.bool
        assert game.frame_tokens.shape[1] <= 4


def test_sliding_window_keeps_the_recent_frames():
    game = make_game(max_frames=4, keep_frames=3)
    game.reset(torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8))
    for _ in range(3):
        game.step(torch.tensor([2]))
    before = game.frame_tokens.clone()  # 4 frames: the context is full
    assert before.shape[1] == 4
    game.step(torch.tensor([3]))
    # The oldest frame was dropped, the most recent three were kept, plus the new one.
    assert torch.equal(game.frame_tokens[:, :3], before[:, 1:])
    assert game.actions.shape[1] == 3 and game.actions[0, -1] == 3
    # What the cache holds equals a fresh read of that window.
    fresh = make_game(max_frames=4, keep_frames=3)
    fresh.world_model.load_state_dict(game.world_model.state_dict())
    fresh.reset(torch.zeros(1, 64, 64, 3, dtype=torch.uint8))
    fresh.frame_tokens, fresh.actions = game.frame_tokens.clone(), game.actions.clone()
    fresh._prefill()
    length = game.cache.length
    assert length == fresh.cache.length
    assert torch.allclose(
        game.cache.kv[..., :length, :], fresh.cache.kv[..., :length, :], atol=1e-5
    )


@pytest.mark.parametrize("batch", [2, 1])  # sequential, speculative (as play runs it)
def test_compiled_generation_makes_the_same_frames_as_eager(batch):
    frames = torch.randint(0, 256, (batch, 64, 64, 3), dtype=torch.uint8)
    actions = torch.tensor([1, 2])[:batch]
    runs = []
    for compile in (False, True):
        game = make_game(max_frames=3, compile=compile)  # 6 steps slide the window twice
        game.greedy = True
        game.reset(frames)
        runs.append(torch.stack([game.step(actions)[0] for _ in range(6)]))
        compiled = game._extend_and_sample.compiled is not None
        assert compiled == compile  # compiling did not fall back to eager
    # Fused kernels round differently, so a decoded pixel may move by one level.
    assert (runs[0].int() - runs[1].int()).abs().max() <= 1


def test_compiling_in_the_background_plays_at_once_and_then_switches():
    frames = torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8)
    eager, background = make_game(max_frames=3), make_game(max_frames=3, compile=True)
    background._extend_and_sample.background = background._decode.background = True
    for game in (eager, background):
        game.greedy = True
        game.reset(frames)
    first = background.step(torch.tensor([1]))[0]  # eager: it started compiling meanwhile
    assert background._extend_and_sample._threads  # compiling started, in a thread
    # (The decoder's graph, started at reset, may be ready already: one level of rounding.)
    assert (first.int() - eager.step(torch.tensor([1]))[0].int()).abs().max() <= 1
    for part in (background._extend_and_sample, background._decode):
        part.wait(timeout=240)
    assert background.compiled
    later = [game.step(torch.tensor([2]))[0] for game in (eager, background)]
    assert (later[0].int() - later[1].int()).abs().max() <= 1  # fused kernels round apart


def test_a_failed_compile_warns_and_runs_uncompiled():
    import torch._inductor.config as inductor_config

    def double(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) * 2

    step = CompiledOrEager(double, compile=True)
    x = torch.linspace(0, 1, 5)
    # As on a machine without a C++ compiler (and no cached kernels to fall back on); the
    # config's own patch() puts it back (monkeypatch deleted fx_graph_cache: later compiles
    # in the same process failed).
    no_compiler = {"cpp.cxx": (None, "/nonexistent/g++"), "fx_graph_cache": False}
    with (
        inductor_config.patch(no_compiler),
        pytest.warns(UserWarning, match="torch.compile failed"),
    ):
        assert torch.allclose(step(x), double(x))
    assert step.compiled is None  # and from then on it runs uncompiled


@pytest.mark.parametrize(("greedy", "top_p"), [(False, 1.0), (True, 1.0), (False, 0.9)])
def test_speculative_and_sequential_generation_make_the_same_frames(greedy, top_p):
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    runs, forwards = [], []
    for speculative in (False, True):
        game = make_game(max_frames=3)  # 8 steps: three slides
        game.speculative, game.greedy, game.top_p = speculative, greedy, top_p
        with torch.no_grad():  # code 5 likely but not sure: some guesses right, some wrong
            game.world_model.obs_head[-1].bias[5] = 6.0
        game.reset(frames)
        steps = [game.step(torch.tensor([1, 2])) for _ in range(8)]
        runs.append([torch.stack(x) for x in zip(*steps, strict=True)])
        forwards.append(game.forwards)
    for sequential, speculative in zip(*runs, strict=True):
        assert torch.equal(sequential, speculative)  # frames, rewards, ends
    assert forwards[0] == 8 * 17
    assert 8 < forwards[1] < forwards[0]


@pytest.mark.parametrize(
    ("batch", "speculative", "forwards"),
    [(2, True, 1), (2, None, 17), (1, None, 1)],  # None: speculate for a single game only
)
def test_a_frame_that_repeats_the_last_costs_one_speculative_forward(batch, speculative, forwards):
    game = make_game()
    game.speculative = speculative
    with torch.no_grad():  # a model sure that every token is code 5
        game.world_model.obs_head[-1].bias[5] = 100.0
    game.reset(torch.zeros(batch, 64, 64, 3, dtype=torch.uint8))
    game.step(torch.ones(batch, dtype=torch.long))
    assert (game.frame_tokens[:, -1] == 5).all()
    before = game.forwards
    game.step(torch.full((batch,), 3))  # all 16 guesses right: one forward checks them
    assert game.forwards - before == forwards


def test_nucleus_keeps_the_fewest_likely_tokens_that_reach_top_p():
    from worldmodel.models.world_model import nucleus

    logits = torch.tensor([0.15, 0.5, 0.05, 0.3]).log()  # most likely first: 1, 3, 0, 2
    kept = {
        p: torch.isfinite(nucleus(logits, torch.tensor(p))).tolist()
        for p in (0.01, 0.45, 0.75, 1.0)
    }
    assert kept[0.01] == kept[0.45] == [False, True, False, False]  # the likeliest always stays
    assert kept[0.75] == [False, True, False, True]
    assert kept[1.0] == [True] * 4
    # Gumbel-max over the truncated logits samples only the nucleus, in its proportions.
    torch.manual_seed(0)
    gumbel = -torch.log(-torch.log(torch.rand(20000, 4)))
    picks = (nucleus(logits, torch.tensor(0.7)) + gumbel).argmax(-1)
    counts = torch.bincount(picks, minlength=4) / len(picks)
    assert counts[0] == counts[2] == 0
    assert abs(counts[1] - 0.5 / 0.8) < 0.02


def test_greedy_generation_is_deterministic_and_seeded_sampling_repeats():
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    runs = []
    for _ in range(2):
        game = make_game()
        game.reset(frames)
        runs.append(torch.stack([game.step(torch.tensor([1, 2]))[0] for _ in range(3)]))
    assert torch.equal(runs[0], runs[1])


def tiny_world_model_module(**kwargs):
    from worldmodel.lit.world_model_module import WorldModelModule

    torch.manual_seed(0)
    model = {"max_frames": 4, "n_layers": 1, "n_heads": 2, "d_model": 32, "dropout": 0.0}
    return WorldModelModule(
        model={**model, "num_actions": 6},
        tokenizer=Tokenizer(TokenizerConfig(**TINY)),
        lr=3e-3,
        lr_warmup_steps=1,
        **kwargs,
    )


def test_world_model_loss_ignores_padding_and_a_few_steps_lower_it():
    module = tiny_world_model_module()
    batch = segments(
        torch.ones(3, 4, dtype=torch.bool),
        # A static scene: each frame repeats the first, which a GPT quickly learns to copy.
        tokens=torch.randint(0, 64, (3, 1, 16)).repeat(1, 4, 1),
        actions=torch.randint(0, 6, (3, 4)),
        rewards=torch.tensor([[0.0, 1, 0, -1]] * 3),
    )
    batch.mask[0, 2:] = False  # the episode ended: steps 2 and 3 are padding
    terms, _ = module.losses(batch)
    padded = dataclasses.replace(
        batch,
        tokens=batch.tokens.clone(),
        actions=batch.actions.clone(),
        rewards=batch.rewards.clone(),
    )
    padded.tokens[0, 2:] = torch.randint(0, 64, (2, 16))
    padded.actions[0, 2:] = torch.randint(0, 6, (2,))
    padded.rewards[0, 2:] = 1.0
    for name, value in module.losses(padded)[0].items():
        assert torch.allclose(value, terms[name]), name

    optimizer = module.configure_optimizers()["optimizer"]
    first = sum(terms.values()).item()
    for _ in range(30):
        loss = sum(module.losses(batch)[0].values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.7 * first


def test_changed_tokens_weigh_more_in_the_frame_loss():
    k = 16
    tokens = torch.randint(0, 64, (3, 1, k)).repeat(1, 4, 1)
    tokens[:, :, 5] = torch.randint(0, 64, (3, 4))  # the "ball": token 5 moves every frame
    tokens[:, 1:, 5] = (tokens[:, :-1, 5] + 1 + torch.arange(3)[:, None]) % 64  # never repeats
    batch = segments(
        torch.ones(3, 4, dtype=torch.bool), tokens=tokens, actions=torch.randint(0, 6, (3, 4))
    )
    plain = tiny_world_model_module()
    heavy = tiny_world_model_module(changed_token_weight=1e9)  # same seed: same weights
    with torch.no_grad():
        terms, predictions = plain.losses(batch)
        sequence = plain.world_model.interleave(tokens, batch.actions)
        logits = plain.world_model(sequence).obs_logits
        # Token 5 of frames 1..3 sits at f*(k+1)+5 and is predicted one position earlier.
        layout = plain.cfg.layout
        where = torch.tensor([f * layout.length + 5 for f in (1, 2, 3)])
        positions = torch.arange(1, sequence.shape[1])
        every = positions[layout.is_frame_token(positions)]

        def mean_ce(positions: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(
                logits[:, positions - 1].flatten(0, 1), sequence[:, positions].flatten()
            )

        heavy_terms, _ = heavy.losses(batch)
    assert predictions["changed_counts"][1] == 9  # 3 games x 3 frames after the first
    assert torch.allclose(terms["obs"], mean_ce(every), rtol=1e-5)
    assert torch.allclose(heavy_terms["obs"], mean_ce(where), rtol=1e-5)


def test_greedy_per_game_mixes_greedy_and_sampled_games_in_one_batch():
    frames = torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8).expand(3, -1, -1, -1)
    runs = {}
    for greedy in (True, False, [False, True, False]):
        game = make_game()
        game.greedy = greedy
        game.reset(frames)
        runs[str(greedy)] = torch.stack([game.step(torch.tensor([1, 1, 1]))[0] for _ in range(4)])
    mixed, all_greedy = runs["[False, True, False]"], runs["True"]
    assert torch.equal(mixed[:, 1], all_greedy[:, 1])  # the greedy game is the greedy one
    assert not torch.equal(mixed[:, 0], all_greedy[:, 0])  # the others sample ...
    sampled = runs["False"]  # ... the very samples they would draw in an all-sampled batch
    assert torch.equal(mixed[:, [0, 2]], sampled[:, [0, 2]])
    with pytest.raises(ValueError, match="flags for a batch"):
        game = make_game()
        game.greedy = [True, False]
        game.reset(frames)
        game.step(torch.tensor([1, 1, 1]))
