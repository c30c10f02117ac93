import torch

from worldmodel.lit.tokenizer_module import TokenizerModule, foreground_mask, moving_mask
from worldmodel.models.autoencoder import AutoencoderConfig
from worldmodel.models.quantizer import VectorQuantizer
from worldmodel.models.tokenizer import Tokenizer, TokenizerConfig

TINY = {
    "autoencoder": {
        "ch": 8,
        "ch_mult": [1, 2, 2, 4, 4],
        "res_blocks": [0, 0, 0, 1, 1],
        "attn_resolutions": [4],
        "z_channels": 32,
    },
    "num_codes": 64,
    "code_dim": 16,
}


def test_encode_decode_shapes_and_dtypes():
    tokenizer = Tokenizer(TokenizerConfig(**TINY)).eval()
    frames = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    tokens = tokenizer.encode(frames)
    assert tokens.shape == (3, 16) and tokens.dtype == torch.long
    assert int(tokens.max()) < 64
    # float (B, 3, H, W) in [0, 1] gives the same tokens as uint8 (B, H, W, 3)
    as_float = frames.permute(0, 3, 1, 2).float() / 255
    assert torch.equal(tokenizer.encode(as_float), tokens)
    decoded = tokenizer.decode(tokens)
    assert decoded.shape == (3, 3, 64, 64) and decoded.dtype == torch.float32
    assert decoded.min() >= 0 and decoded.max() <= 1


def test_a_local_encoder_gives_each_patch_a_token_of_its_own():
    local = Tokenizer(TokenizerConfig(**TINY, local_encoder=True)).eval()
    glob = Tokenizer(TokenizerConfig(**TINY)).eval()
    frames = torch.rand(1, 3, 64, 64)
    changed = frames.clone()
    changed[:, :, :16, :16] = torch.rand(1, 3, 16, 16)  # only the top-left patch (token 0)
    # Pre-quantization codes: tokens could coincide by chance, the vectors cannot.
    z_local = [local.pre_quant(local.encoder(local.to_patches(f))) for f in (frames, changed)]
    moved = (z_local[0] - z_local[1]).abs().flatten(1).amax(1)  # one row per patch
    assert moved[0] > 0 and torch.all(moved[1:] == 0)
    # The global encoder mixes neighbours: the same change reaches other tokens' vectors.
    z_glob = [glob.pre_quant(glob.encoder(f * 2 - 1)) for f in (frames, changed)]
    assert (z_glob[0] - z_glob[1])[..., 1:, 1:].abs().amax() > 0
    # The tokens come back in the same order: only token 0 may change.
    assert torch.equal(local.encode(frames)[:, 1:], local.encode(changed)[:, 1:])


def test_decoding_unquantized_is_decoding_codes_that_sit_on_the_encoder_outputs():
    torch.manual_seed(0)
    tokenizer = Tokenizer(TokenizerConfig(**TINY, local_encoder=True)).eval()
    frames = torch.rand(1, 3, 64, 64)
    unquantized = tokenizer.decode_unquantized(frames)
    assert not torch.allclose(tokenizer.decode(tokenizer.encode(frames)), unquantized)
    with torch.no_grad():  # codes 0-15: the frame's 16 encoder outputs themselves
        latents = tokenizer._latents(frames).permute(0, 2, 3, 1).reshape(16, -1)
        tokenizer.quantizer.codebook.weight[:16] = latents
    tokens = tokenizer.encode(frames)
    assert torch.equal(tokens[0], torch.arange(16))
    assert torch.allclose(tokenizer.decode(tokens), unquantized, atol=1e-5)


def test_iris_sized_config_builds_with_16_tokens():
    cfg = TokenizerConfig(autoencoder=AutoencoderConfig())
    assert cfg.tokens_per_frame == 16 and cfg.num_codes == 512


def test_straight_through_gradient_reaches_the_encoder():
    quantizer = VectorQuantizer(num_codes=16, dim=8)
    z = torch.randn(2, 8, 4, 4, requires_grad=True)
    out = quantizer(z)
    out.z_q.sum().backward()
    # With z_q fed directly (no straight-through), z would get no gradient at all from this.
    assert z.grad is not None and z.grad.abs().sum() > 0

    tokenizer = Tokenizer(TokenizerConfig(**TINY))
    frames = torch.rand(2, 3, 64, 64)
    tokenizer(frames).reconstruction.mean().backward()
    first_conv = tokenizer.encoder.net[0].weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0


def test_dead_codes_are_revived_onto_encoder_outputs_one_code_each():
    quantizer = VectorQuantizer(num_codes=32, dim=4, dead_after_steps=2).train()
    z = torch.randn(1, 4, 2, 2)  # 4 encoder outputs per batch
    quantizer(z)
    assert quantizer.revive_dead_codes_() == 0  # nothing idle for long yet
    quantizer.idle_steps.fill_(3)  # every code dead
    # At most one code per output: copies of one output could not all be chosen.
    assert quantizer.revive_dead_codes_() == 4
    assert (quantizer.idle_steps == 0).sum() == 4
    # The revived codes sit exactly on the batch's 4 encoder outputs, one on each.
    inputs = torch.nn.functional.normalize(z.permute(0, 2, 3, 1).reshape(-1, 4), dim=-1)
    raw = quantizer.codebook.weight
    on_inputs = [j for j in range(4) for i in range(32) if torch.equal(raw[i], inputs[j])]
    assert sorted(on_inputs) == [0, 1, 2, 3]


def test_a_codebook_per_position_draws_each_position_from_its_own_codes():
    quantizer = VectorQuantizer(num_codes=4, dim=2, cosine=False, books=4)
    latents = torch.tensor([[0.3, -0.2], [0.1, 0.4], [-0.5, 0.2], [0.0, -0.6]])
    with torch.no_grad():
        quantizer.codebook.weight.fill_(50.0)
        for k in range(4):
            quantizer.codebook.weight[k * 4 + 3 - k] = latents[k]  # book k: code 3-k
    z = latents.T.reshape(1, 2, 2, 2)  # position k (row by row) holds latents[k]
    out = quantizer(z)
    assert out.tokens.tolist() == [[3, 2, 1, 0]]
    assert torch.equal(quantizer.lookup(out.tokens, (2, 2)), z)
    # One latent everywhere: with a book per position a different id at each position...
    same = latents[0][None, :, None, None].expand(1, 2, 2, 2)
    with torch.no_grad():
        for k in range(4):
            quantizer.codebook.weight[k * 4 + k] = latents[0]
    assert quantizer(same).tokens.tolist() == [[0, 1, 2, 3]]
    # ...with one shared book the first code equal to it, everywhere.
    shared = VectorQuantizer(num_codes=16, dim=2, cosine=False)
    shared.codebook.weight.data.copy_(quantizer.codebook.weight.data)
    assert shared(same).tokens.tolist() == [[0, 0, 0, 0]]


def test_a_books_dead_codes_are_revived_onto_its_own_positions():
    quantizer = VectorQuantizer(num_codes=8, dim=3, dead_after_steps=5, books=4).train()
    assert quantizer.dead_after == 20  # a book sees a quarter of the outputs: waits 4x
    quantizer.idle_steps[2 * 8 : 3 * 8] = 100  # book 2 (position 2) idle for long
    z = torch.randn(3, 3, 2, 2)
    chosen = quantizer(z).tokens[:, 2].unique()
    # The codes chosen live on; the others take position 2's 3 outputs, one each.
    revived = quantizer.revive_dead_codes_()
    assert revived == min(8 - len(chosen), 3)
    inputs = quantizer._latest_inputs  # (B, K, D), normalised
    book = quantizer.codebook.weight[2 * 8 : 3 * 8]
    on_position_2 = [any(torch.equal(c, x) for x in inputs[:, 2]) for c in book]
    others = inputs[:, [0, 1, 3]].flatten(0, 1)
    on_elsewhere = [any(torch.equal(c, x) for x in others) for c in book]
    assert sum(on_position_2) >= revived and not any(on_elsewhere)


def test_the_moving_l2_term_counts_only_moving_pixels():
    module = TokenizerModule(TINY, {"perceptual_weight": 0.0, "moving_l2_weight": 1.0}).eval()
    frames = torch.full((4, 3, 64, 64), 0.5)
    terms, recon, _ = module.losses(frames)  # a static batch: the real frames move nowhere
    moving = moving_mask(frames, recon, 0.02)
    squared = (recon - frames).pow(2).sum(1, keepdim=True)
    expected = (squared * moving).sum() / moving.sum().clamp_min(1)
    assert torch.allclose(terms["moving_l2"], expected)
    weights = 1.0 + 10.0 * foreground_mask(frames, 0.02)  # (moving_weight defaults to 0)
    l1 = ((recon - frames).abs() * weights).mean() / weights.mean()
    assert torch.allclose(terms["l1"], l1)
    frames[1, :, 30:32, 40] = 1.0  # a ball in one frame: its pixels join the mask
    terms, recon, _ = module.losses(frames)
    assert moving_mask(frames, recon, 0.02)[1, 0, 30:32, 40].all()


def test_foreground_mask_finds_a_faint_ball():
    frames = torch.zeros(1, 3, 64, 64)
    frames[:, 0] = 144 / 255
    frames[0, :, 30, 40] += 0.06  # a ball smudge at ~10% of full contrast
    mask = foreground_mask(frames, threshold=0.02)
    assert mask[0, 0, 30, 40] and mask.sum() == 1


def test_moving_mask_marks_what_moves_and_phantoms_but_not_the_static_scene():
    frames = torch.zeros(5, 3, 64, 64)
    frames[:, 0] = 144 / 255
    frames[:, :, 5:8] = 236 / 255  # a wall, in every frame
    for i in range(5):
        frames[i, :, 20 + 5 * i, 40] += 0.06  # a faint ball, somewhere else in each frame
    recon = frames.clone()
    recon[0, :, 50, 10] += 0.1  # a phantom ball the reconstruction made up
    mask = moving_mask(frames, recon, threshold=0.02)
    assert mask[:, 0, :, 40].sum() == 5 and mask[0, 0, 50, 10]
    assert mask.sum() == 6  # the wall is static, so not marked


def test_a_few_training_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    module = TokenizerModule(
        model=TINY, loss={"perceptual_weight": 0.0, "moving_weight": 20.0}, lr=3e-3
    )
    optimizer = module.configure_optimizers()
    frames = torch.randint(0, 256, (8, 64, 64, 3), dtype=torch.uint8)
    frames[:, :, :, :] = torch.tensor([144, 72, 17], dtype=torch.uint8)
    frames[:, 20:24, 30:32] = 236
    losses = []
    for _ in range(15):
        terms, _, _ = module.losses(frames)
        loss = sum(terms.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
