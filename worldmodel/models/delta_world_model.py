"""The world model over context-aware tokens (Delta-IRIS): a GPT over blocks of

    [the frame (one continuous embedding: a small CNN, trained with the GPT),
     the action taken in it, the K tokens of the next frame given both]

K + 2 inputs a step (6 for K = 4) instead of IRIS's 17. From the action it predicts the
next frame's first token, the reward and the episode end; from each token, the next token.
`BlockLayout` owns where each input sits; nothing else spells it out.

With the tokenizer's score slot, a frame's score change (who scored since the frame before)
is predicted from the action too, beside the reward, and is not an input: the frame
embedding shows the score, and no step spends a forward on a token that is nearly always
"nobody".

With `ball_motion` (and the ball slot), each ball token is read and predicted also as its
step from the frame before's (ball_motion.py): a flight becomes a copy.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from worldmodel.frames import to_float_frames
from worldmodel.models.ball_motion import BallMotion
from worldmodel.models.delta_tokenizer import DeltaTokenizerConfig, conv_stack
from worldmodel.models.score_slot import CHANGES
from worldmodel.models.transformer import KVCache, Transformer, TransformerConfig, init_gpt2_weights
from worldmodel.models.world_model import gumbel_pick, head


@dataclass
class DeltaWorldModelConfig:
    tokens_per_frame: int = 4  # the tokens of a frame read as inputs
    score_change: bool = False  # predict the tokenizer's score change token from the action
    ball_ids: tuple[int, int] | None = None  # the tokenizer's ball slot's first ids, if any
    ball_motion: bool = False  # the ball's tokens also as steps from the frame before's
    num_codes: int = 1024  # token ids: the tokenizer's vocab_size
    num_actions: int = 6
    max_frames: int = 26  # context length in steps (blocks)
    n_layers: int = 3
    n_heads: int = 4
    d_model: int = 256
    dropout: float = 0.0
    resolution: int = 64
    frame_channels: int = 16  # the frame CNN's first width (x2 at each of 3 downsamplings)
    frame_latent: int = 4  # its output channels at 8x8: 256 numbers, projected to d_model

    def __post_init__(self) -> None:
        if self.max_frames < 2:
            raise ValueError(
                f"max_frames must be >= 2 (a frame and the next), got {self.max_frames}"
            )
        if self.ball_motion and self.ball_ids is None:
            raise ValueError(
                "ball_motion needs the tokenizer's ball slot (ball_slot=true); "
                "without it set world_model.module.model.ball_motion=false"
            )

    @property
    def layout(self) -> "BlockLayout":
        return BlockLayout(self.tokens_per_frame)

    @property
    def block_size(self) -> int:
        return self.max_frames * self.layout.length

    @property
    def predicting_positions(self) -> int:
        """The positions whose token predictions training teaches: a training segment holds
        max_frames frames and the last one's next frame is not in it, so the last block's
        tokens are never targets. Generation samples a step's tokens only within these
        (past them the model draws whatever untrained positions say: a ghost ball)."""
        return self.block_size - self.layout.length


@dataclass(frozen=True)
class BlockLayout:
    """One step's inputs: [frame, action, token 1 .. token K]."""

    tokens_per_frame: int

    FRAME, ACTION = 0, 1

    @property
    def length(self) -> int:
        return self.tokens_per_frame + 2

    @property
    def first_token(self) -> int:
        return 2

    def predicts_token(self) -> slice:
        """The inputs whose output is the next token: the action, tokens 1 .. K-1."""
        return slice(self.ACTION, self.length - 1)


@dataclass
class DeltaWorldModelOutput:
    hidden: torch.Tensor  # (B, T * L, D)
    token_logits: torch.Tensor  # (B, T, K, num_codes): the next frame's tokens, in order
    reward_logits: torch.Tensor  # (B, T, 3): reward sign -1, 0, +1 of each step's action
    end_logits: torch.Tensor  # (B, T, 2)
    score_logits: torch.Tensor | None  # (B, T, CHANGES): who scored in the next frame


class DeltaWorldModel(nn.Module):
    def __init__(self, cfg: DeltaWorldModelConfig) -> None:
        super().__init__()
        self.cfg, self.layout = cfg, cfg.layout
        self.transformer_cfg = TransformerConfig(
            cfg.block_size, cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.dropout
        )
        cnn = DeltaTokenizerConfig(resolution=cfg.resolution, channels=cfg.frame_channels)
        latent = cnn.latent_resolution**2 * cfg.frame_latent
        self.frame_cnn = nn.Sequential(
            conv_stack(3, cfg.frame_latent, cnn),
            nn.Flatten(),
            nn.Linear(latent, cfg.d_model),
            nn.LayerNorm(cfg.d_model),
        )
        self.action_embed = nn.Embedding(cfg.num_actions, cfg.d_model)
        self.token_embed = nn.Embedding(cfg.num_codes, cfg.d_model)
        self.transformer = Transformer(self.transformer_cfg)
        self.token_head = head(cfg.d_model, cfg.num_codes)
        self.reward_head = head(cfg.d_model, 3)
        self.end_head = head(cfg.d_model, 2)
        self.score_head = head(cfg.d_model, CHANGES) if cfg.score_change else None
        self.motion = (
            BallMotion(tuple(cfg.ball_ids), cfg.num_codes, cfg.d_model) if cfg.ball_motion else None
        )
        init_gpt2_weights(self.transformer, cfg.n_layers)
        for table in (self.action_embed, self.token_embed):  # on the position embeddings' scale
            nn.init.normal_(table.weight, std=0.02)

    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., H, W, 3) uint8 or (..., 3, H, W) float frames -> (..., D)."""
        lead = frames.shape[:-3]
        x = to_float_frames(frames.flatten(0, len(lead) - 1) if lead else frames[None])
        return self.frame_cnn(x * 2 - 1).view(*lead, -1)

    def references(self, previous: torch.Tensor) -> torch.Tensor | None:
        """The tokens (..., K) of the frames before -> the references of the next frames'
        tokens (..., K) for the ball's motion (zeros: unknown); None without ball_motion."""
        return None if self.motion is None else self.motion.references(previous)

    def block_references(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """Teacher forcing: each block's tokens (B, T, K) refer to the block before's; the
        first block's frame before is unknown."""
        return self.references(F.pad(tokens[:, :-1], (0, 0, 1, 0)))

    def embed_tokens(self, tokens: torch.Tensor, refs: torch.Tensor | None) -> torch.Tensor:
        """Tokens (...) and their references (same shape, or None) -> input embeddings."""
        x = self.token_embed(tokens)
        return x if refs is None else x + self.motion.input_embedding(tokens, refs)

    def token_logits(self, hidden: torch.Tensor, refs: torch.Tensor | None) -> torch.Tensor:
        """Hidden states (..., D) -> the logits of the tokens they predict, given those
        tokens' references (...; None: no motion)."""
        logits = self.token_head(hidden)
        return logits if refs is None else logits + self.motion.logits(hidden, refs)

    def sequence(
        self,
        frame_embeddings: torch.Tensor,
        actions: torch.Tensor,
        tokens: torch.Tensor,
        refs: torch.Tensor | None,
    ) -> torch.Tensor:
        """Frame embeddings (B, T, D), actions (B, T), the next frames' tokens (B, T, K) and
        their references (block_references) -> the input sequence (B, T * L, D), block
        after block."""
        x = torch.cat(
            [
                frame_embeddings[:, :, None],
                self.action_embed(actions)[:, :, None],
                self.embed_tokens(tokens, refs),
            ],
            dim=2,
        )
        return x.flatten(1, 2)

    def heads(self, hidden: torch.Tensor, refs: torch.Tensor | None) -> DeltaWorldModelOutput:
        """hidden (B, T * L, D) of whole blocks whose tokens have the references `refs`
        (B, T, K; block_references) -> the predictions of every block."""
        b, length = hidden.shape[0], self.layout.length
        per_block = hidden.view(b, -1, length, hidden.shape[-1])
        at_action = per_block[:, :, self.layout.ACTION]
        return DeltaWorldModelOutput(
            hidden,
            self.token_logits(per_block[:, :, self.layout.predicts_token()], refs),
            self.reward_head(at_action),
            self.end_head(at_action),
            None if self.score_head is None else self.score_head(at_action),
        )

    def forward(
        self, frames: torch.Tensor, actions: torch.Tensor, tokens: torch.Tensor
    ) -> DeltaWorldModelOutput:
        refs = self.block_references(tokens)
        x = self.sequence(self.embed_frames(frames), actions, tokens, refs)
        return self.heads(self.transformer(x), refs)

    def loss(
        self,
        frames: torch.Tensor,
        actions: torch.Tensor,
        tokens: torch.Tensor,
        rewards: torch.Tensor,
        ends: torch.Tensor,
        steps: torch.Tensor,
        next_frames: torch.Tensor,
        score_changes: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], DeltaWorldModelOutput]:
        """Cross-entropies, and the output they come from. `steps` (B, T): the step's frame
        and action are in the episode (reward and end are learned there: an episode's last
        step carries its end and often its last point); `next_frames` (B, T): the frame
        after it is too (its tokens and score change (B, T), with the score slot, exist)."""
        out = self(frames, actions, tokens)
        has_tokens = steps & next_frames
        terms = {
            "tokens": F.cross_entropy(
                out.token_logits[has_tokens].flatten(0, 1), tokens[has_tokens].flatten()
            ),
            "reward": F.cross_entropy(out.reward_logits[steps], (rewards.sign() + 1).long()[steps]),
            "end": F.cross_entropy(out.end_logits[steps], ends.long()[steps]),
        }
        if self.score_head is not None:
            if score_changes is None:
                raise ValueError("a world model with a score head needs the score changes")
            terms["score"] = F.cross_entropy(
                out.score_logits[has_tokens], score_changes[has_tokens]
            )
        return terms, out

    def new_cache(self, batch: int, device: torch.device) -> KVCache:
        return KVCache(self.transformer_cfg, batch, device)

    def extend(
        self, x: torch.Tensor, position: torch.Tensor, kv: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generation: input embeddings (B, T, D) after `position` cached ones -> hidden
        (B, T, D) and their keys/values (see Transformer.extend)."""
        return self.transformer.extend(x, position, kv)

    def extend_and_sample(
        self,
        x: torch.Tensor,
        position: torch.Tensor,
        kv: torch.Tensor,
        inv_temperature: torch.Tensor,
        top_p: torch.Tensor | None,
        gumbel: torch.Tensor,
        refs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """extend() that also picks the token each input predicts (gumbel_pick, with `gumbel`
        (B, T, num_codes)), whose references are `refs` (B, T). Returns hidden (B, T, D),
        tokens (B, T), keys/values."""
        h, new_kv = self.extend(x, position, kv)
        return h, gumbel_pick(self.token_logits(h, refs), inv_temperature, top_p, gumbel), new_kv

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Weight decay on the matrices of linear and conv layers only."""
        decay, no_decay = [], []
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                matrix = isinstance(module, nn.Linear | nn.Conv2d) and name == "weight"
                (decay if matrix else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
