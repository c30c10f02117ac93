"""Replay buffer: one ring of steps per stream (an env, or a run of stored episodes).

Keeping each stream contiguous makes a segment of L consecutive steps a slice of one
ring, and the per-slot episode id tells where an episode ends, so a segment never
silently spans two episodes: steps past the end are padding with mask=False.
"""

import numpy as np

from worldmodel.data.episode import Episode

STEP_FIELDS = ("actions", "rewards", "terminated", "truncated")


class ReplayBuffer:
    def __init__(
        self,
        num_streams: int,
        capacity: int,
        frame_shape: tuple[int, int, int],
        tokens_per_frame: int = 0,
    ) -> None:
        """With `tokens_per_frame > 0` each step also stores the frame's tokenizer tokens,
        so the world model stage encodes each frame once, not each time it is sampled."""
        self.num_streams, self.capacity = num_streams, capacity
        self.frames = np.zeros((num_streams, capacity, *frame_shape), np.uint8)
        self.tokens = np.zeros((num_streams, capacity, tokens_per_frame), np.int64)
        self.actions = np.zeros((num_streams, capacity), np.int64)
        self.rewards = np.zeros((num_streams, capacity), np.float32)
        self.terminated = np.zeros((num_streams, capacity), bool)
        self.truncated = np.zeros((num_streams, capacity), bool)
        self.episode_ids = np.full((num_streams, capacity), -1, np.int64)
        self.written = np.zeros(num_streams, np.int64)  # steps ever written per stream
        self._next_episode_id = 0

    @property
    def size(self) -> int:
        return int(np.minimum(self.written, self.capacity).sum())

    def new_episode_ids(self, n: int) -> np.ndarray:
        ids = np.arange(self._next_episode_id, self._next_episode_id + n)
        self._next_episode_id += n
        return ids

    def add_steps(
        self,
        streams: np.ndarray,
        episode_ids: np.ndarray,
        frames: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        tokens: np.ndarray | None = None,
    ) -> None:
        """Append one or more steps; row i goes to `streams[i]` (streams may repeat in order)."""
        streams = np.asarray(streams)
        # Rows aimed at the same stream land in consecutive slots, in the order given.
        order = np.argsort(streams, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(streams)) - np.searchsorted(streams[order], streams[order])
        slots = (self.written[streams] + rank) % self.capacity
        self.frames[streams, slots] = frames
        self.actions[streams, slots] = actions
        self.rewards[streams, slots] = rewards
        self.terminated[streams, slots] = terminated
        self.truncated[streams, slots] = truncated
        self.episode_ids[streams, slots] = episode_ids
        if tokens is not None:
            self.tokens[streams, slots] = tokens
        np.add.at(self.written, streams, 1)

    def add_episode(self, stream: int, episode: Episode, tokens: np.ndarray | None = None) -> None:
        n = len(episode)
        self.add_steps(
            np.full(n, stream),
            np.full(n, self.new_episode_ids(1)[0]),
            episode.frames,
            episode.actions,
            episode.rewards,
            episode.terminated,
            episode.truncated,
            tokens,
        )

    def _stored_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Per stream, the first logical step still stored and how many are stored."""
        count = np.minimum(self.written, self.capacity)
        return self.written - count, count

    def sample_positions(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n (stream, logical step) pairs, uniform over all stored steps."""
        first, count = self._stored_range()
        if count.sum() == 0:
            raise RuntimeError("the replay buffer is empty: collect or load episodes first")
        flat = rng.integers(count.sum(), size=n)
        streams = np.searchsorted(np.cumsum(count), flat, side="right")
        offsets = flat - (np.cumsum(count) - count)[streams]
        return streams, first[streams] + offsets

    def frames_at(self, streams: np.ndarray, steps: np.ndarray) -> np.ndarray:
        return self.frames[streams, steps % self.capacity]

    def segments_at(self, streams: np.ndarray, starts: np.ndarray, length: int) -> dict:
        """Segments of `length` steps; steps past the episode end are zeros with mask False."""
        steps = starts[:, None] + np.arange(length)[None, :]
        slots = steps % self.capacity
        rows = streams[:, None]
        same_episode = self.episode_ids[rows, slots] == self.episode_ids[rows, slots[:, :1]]
        # Once the episode ended, later slots may hold a different (or an old) episode.
        mask = same_episode & (steps < self.written[rows])
        mask &= np.cumprod(mask, axis=1).astype(bool)
        segment = {
            "frames": self.frames[rows, slots] * mask[..., None, None, None],
            "mask": mask,
        }
        if self.tokens.shape[-1] > 0:
            segment["tokens"] = self.tokens[rows, slots] * mask[..., None]
        for name in STEP_FIELDS:
            values = getattr(self, name)[rows, slots]
            segment[name] = np.where(mask, values, np.zeros((), values.dtype))
        return segment

    def sample_segments(self, n: int, length: int, rng: np.random.Generator) -> dict:
        streams, starts = self.sample_positions(n, rng)
        return self.segments_at(streams, starts, length)

    def sample_frames(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.frames_at(*self.sample_positions(n, rng))
