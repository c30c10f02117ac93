"""The streaming LightningDataModule: play the game while the model trains on what was played.

Collection runs inside the DataLoader workers: each worker owns its envs, its policy and
its replay buffer, steps the game a little, then samples a batch. With `num_workers > 0`
the workers collect and sample in parallel with the training step (the loader prefetches),
so the model never waits on the emulator once the buffers are warm; with `num_workers=0`
the same code runs inline. Either way each worker collects a fixed number of steps per
batch from its own seeded envs, so the same seed and settings give the same batches.
Worker processes (rather than one background collector feeding a shared buffer) need no
shared memory or locking and scale with `num_workers` like any DataLoader.
"""

import copy
import logging
from collections.abc import Callable, Iterator
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    get_worker_info,
)

from worldmodel.data.buffer import ReplayBuffer
from worldmodel.data.collector import Collector
from worldmodel.data.episode import Episode
from worldmodel.data.held_out import DEFAULT, HeldOut, held_out_episodes
from worldmodel.data.segments import Segments
from worldmodel.data.store import EpisodeStore
from worldmodel.envs.atari import EnvSpec
from worldmodel.frames import windows

log = logging.getLogger(__name__)
Mode = Literal["frames", "segments"]


def derive_seed(*keys: int) -> int:
    """A well-mixed seed per (run seed, rank, worker): parallel collectors must differ."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


class FrameEncoder:
    """A frozen tokenizer as a numpy function: the tokens each step of play stores, (N, K)
    int64, from the last `context_frames` frames up to the step's (N, n, H, W, 3) uint8,
    its actions (N,) and the frames that followed (see `step_tokens` of each tokenizer:
    IRIS's tokens of the frame itself, the context-aware tokenizer's of the next frame given
    the frames before it and the action)."""

    def __init__(self, tokenizer: torch.nn.Module, chunk: int = 256) -> None:
        # Its own CPU copy: the trainer moves the module's tokenizer to the GPU, and forked
        # DataLoader workers cannot use CUDA anyway.
        self.tokenizer, self.chunk = copy.deepcopy(tokenizer).cpu().eval(), chunk
        self.tokens_per_frame = tokenizer.frame_tokens
        self.context_frames = tokenizer.context_frames

    def __call__(
        self, recent: np.ndarray, actions: np.ndarray, next_frames: np.ndarray
    ) -> np.ndarray:
        arrays = [torch.from_numpy(a).split(self.chunk) for a in (recent, actions, next_frames)]
        with torch.inference_mode():
            parts = [
                self.tokenizer.step_tokens(*chunk).numpy() for chunk in zip(*arrays, strict=True)
            ]
        return np.concatenate(parts)

    def episode(self, episode: Episode) -> np.ndarray:
        """The tokens of every step of a recorded episode (its last step has no next frame:
        its own stands in, and the tokens it gets are never read)."""
        following = np.concatenate([episode.frames[1:], episode.frames[-1:]])
        recent = windows(episode.frames[None], self.context_frames)[0]
        return self(recent, episode.actions, following)


class StreamingDataset(IterableDataset):
    """Endless batches sampled from a replay buffer that live collection keeps filling."""

    def __init__(
        self,
        spec: EnvSpec,
        make_policy: Callable,
        *,
        mode: Mode,
        batch_size: int,
        seq_len: int,
        num_envs: int,
        buffer_steps: int,
        warmup_steps: int,
        collect_steps_per_batch: int,
        seed: int,
        rank: int = 0,
        start_step: int = 0,
        episodes_dir: str | None = None,
        save_dir: str | None = None,
        encode: FrameEncoder | None = None,
    ) -> None:
        super().__init__()
        self.encode = encode
        if num_envs == 0 and episodes_dir is None:
            raise ValueError("no data: set data.num_envs > 0 (live play) or data.episodes_dir")
        self.spec, self.make_policy, self.mode = spec, make_policy, mode
        self.batch_size, self.seq_len = batch_size, seq_len
        self.num_envs, self.buffer_steps, self.warmup_steps = num_envs, buffer_steps, warmup_steps
        self.collect_steps_per_batch = collect_steps_per_batch
        # start_step > 0 when resuming: fresh episodes, not a replay of the first ones.
        self.seed, self.rank, self.start_step = seed, rank, start_step
        self.episodes_dir, self.save_dir = episodes_dir, save_dir

    def _setup_worker(self) -> tuple[ReplayBuffer, Collector | None, np.random.Generator]:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        seed = derive_seed(self.seed, self.rank, worker, self.start_step)
        streams = max(self.num_envs, 1)
        frame_shape = (self.spec.frame_size, self.spec.frame_size, 3)
        capacity = max(self.buffer_steps // streams, self.seq_len)
        tokens_per_frame = 0 if self.encode is None else self.encode.tokens_per_frame
        buffer = ReplayBuffer(streams, capacity, frame_shape, tokens_per_frame)
        if self.episodes_dir is not None:
            num_workers = 1 if info is None else info.num_workers
            # Each worker takes its share of the stored episodes.
            stored = EpisodeStore(self.episodes_dir).load_all()
            for k, episode in enumerate(stored):
                if k % num_workers == worker:
                    tokens = None if self.encode is None else self.encode.episode(episode)
                    buffer.add_episode(k % streams, episode, tokens)
        collector = None
        if self.num_envs > 0:
            save_to = EpisodeStore(self.save_dir) if self.save_dir else None
            collector = Collector(
                self.spec,
                self.make_policy,
                self.num_envs,
                seed,
                buffer,
                save_to,
                name=f"seed{self.seed}-rank{self.rank}-w{worker}",
                encode=self.encode,
            )
            collector.collect(self.warmup_steps)
        return buffer, collector, np.random.default_rng(seed)

    def __iter__(self) -> Iterator:
        buffer, collector, rng = self._setup_worker()
        while True:
            if collector is not None:
                collector.collect(self.collect_steps_per_batch)
            if self.mode == "frames":
                yield torch.from_numpy(buffer.sample_frames(self.batch_size, rng))
            else:
                yield Segments.from_numpy(
                    buffer.sample_segments(self.batch_size, self.seq_len, rng)
                )


class HeldOutDataset(Dataset):
    """Fixed validation items from fixed episodes: every k-th frame, or back-to-back segments."""

    def __init__(
        self,
        episodes: list[Episode],
        mode: Mode,
        seq_len: int,
        frame_stride: int,
        encode: FrameEncoder | None = None,
    ) -> None:
        longest = max(len(e) for e in episodes)
        tokens_per_frame = 0 if encode is None else encode.tokens_per_frame
        self.buffer = ReplayBuffer(
            len(episodes), longest, episodes[0].frames.shape[1:], tokens_per_frame
        )
        for stream, episode in enumerate(episodes):
            tokens = None if encode is None else encode.episode(episode)
            self.buffer.add_episode(stream, episode, tokens)
        self.mode, self.seq_len = mode, seq_len
        step = frame_stride if mode == "frames" else seq_len
        self.index = np.array(
            [(s, t) for s, e in enumerate(episodes) for t in range(0, len(e), step)], np.int64
        )

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, items: list[int]) -> torch.Tensor | Segments:
        """A whole batch: the loader's sampler hands over a batch of item numbers at once."""
        stream, start = self.index[items].T
        if self.mode == "frames":
            return torch.from_numpy(self.buffer.frames_at(stream, start))
        return Segments.from_numpy(self.buffer.segments_at(stream, start, self.seq_len))


class StreamingDataModule(L.LightningDataModule):
    """Serves both stages: `mode="frames"` (tokenizer) or `mode="segments"` (world model)."""

    def __init__(
        self,
        env: EnvSpec,
        policy: Callable,
        *,
        mode: Mode = "frames",
        batch_size: int = 32,
        seq_len: int = 20,
        num_envs: int = 8,
        buffer_steps: int = 50_000,
        warmup_steps: int = 256,
        collect_steps_per_batch: int = 1,
        num_workers: int = 1,
        seed: int = 0,
        episodes_dir: str | None = None,
        save_dir: str | None = None,
        val_dir: str = "data/val",
        held_out: HeldOut = DEFAULT,
        val_frame_stride: int = 4,
        tokenizer: torch.nn.Module | None = None,
    ) -> None:
        """With a (frozen) `tokenizer`, segments also carry each frame's tokens."""
        super().__init__()
        self.encode = None if tokenizer is None else FrameEncoder(tokenizer)
        self.env, self.policy = env, policy
        self.mode, self.batch_size, self.seq_len = mode, batch_size, seq_len
        self.num_envs, self.buffer_steps, self.warmup_steps = num_envs, buffer_steps, warmup_steps
        self.collect_steps_per_batch, self.num_workers, self.seed = (
            collect_steps_per_batch,
            num_workers,
            seed,
        )
        self.episodes_dir, self.save_dir = episodes_dir, save_dir
        self.val_dir, self.held_out_spec = val_dir, held_out
        self.val_frame_stride = val_frame_stride
        self._val: HeldOutDataset | None = None

    @property
    def rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    def held_out(self) -> list[Episode]:
        return held_out_episodes(self.env, self.val_dir, self.held_out_spec)

    def prepare_data(self) -> None:
        self.held_out()  # collected once, on one process

    def train_dataset(self) -> StreamingDataset:
        return StreamingDataset(
            self.env,
            self.policy,
            mode=self.mode,
            batch_size=self.batch_size,
            seq_len=self.seq_len,
            num_envs=self.num_envs,
            buffer_steps=self.buffer_steps,
            warmup_steps=self.warmup_steps,
            collect_steps_per_batch=self.collect_steps_per_batch,
            seed=self.seed,
            rank=self.rank,
            episodes_dir=self.episodes_dir,
            save_dir=self.save_dir,
            encode=self.encode,
            start_step=self.trainer.global_step if self.trainer is not None else 0,
        )

    def train_dataloader(self) -> DataLoader:
        # The dataset yields whole batches, so the loader must not batch again.
        return DataLoader(
            self.train_dataset(),
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        if self._val is None:
            self._val = HeldOutDataset(
                self.held_out(), self.mode, self.seq_len, self.val_frame_stride, self.encode
            )
        batches = BatchSampler(SequentialSampler(self._val), self.batch_size, drop_last=False)
        return DataLoader(self._val, batch_size=None, sampler=batches)
