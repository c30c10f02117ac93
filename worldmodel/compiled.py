"""torch.compile where it works, eager where it does not, and in the background for play."""

import threading
import warnings
from collections.abc import Callable, Hashable
from typing import Any

import torch

# One background compile at a time, over every wrapped function: compiling is CPU-bound
# Python work, and two at once on a small machine only slow each other and the eager frames.
_COMPILE_LOCK = threading.Lock()

# A graph per signature (static shapes): a context-aware step has three input widths, times
# batch sizes and nucleus on/off. Past Dynamo's default of 8 graphs a function it would
# quietly run eager (imagination at batch 64 after a batch-1 and a batch-16 game).
RECOMPILE_LIMIT = 32


def _signature(args: tuple) -> Hashable:
    """What a static-shape graph is specialised on (its guards): each tensor's shape,
    strides and dtype (an expanded tensor's zero strides make a graph of their own)."""
    return tuple(
        (tuple(a.shape), a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a for a in args
    )


class CompiledOrEager:
    """`fn` through torch.compile (static shapes); if compiling fails, e.g. with no C++
    compiler on the machine, warn once and call `fn` as it is from then on.

    `background=True` compiles without making the caller wait (the play window shows at
    once): each call with arguments of a shape not compiled yet starts compiling that shape
    in a thread and runs `fn` eagerly until its graph is ready. The thread gets the caller's
    tensors themselves: a copy could change their strides (and so miss the graph), and the
    compiling call's outputs are thrown away, so a value the caller updates meanwhile is
    harmless.
    A step of the context-aware game calls its forward with three input widths: each
    compiles in the background, never in the caller's frame. Compiling is slow Python work
    (tens of seconds a shape on 2 CPU cores), so the eager frames are slower meanwhile."""

    def __init__(self, fn: Callable[..., Any], compile: bool, background: bool = False) -> None:
        self.fn = fn
        self.compiled = None
        if compile:
            dynamo = torch._dynamo.config
            dynamo.recompile_limit = max(dynamo.recompile_limit, RECOMPILE_LIMIT)
            self.compiled = torch.compile(fn, dynamic=False)
        self.background = background
        self._seen: set[Hashable] = set()  # signatures called with (background)
        self._done: set[Hashable] = set()  # signatures whose graph is compiled (background)
        self._threads: list[threading.Thread] = []

    @property
    def ready(self) -> bool:
        """Whether calls now go through the compiled graph, for every shape seen so far."""
        if self.compiled is None:
            return False
        return not self.background or bool(self._seen) and self._seen <= self._done

    @property
    def pending(self) -> bool:
        """Whether a background compile is still under way."""
        return self.compiled is not None and self.background and not self._seen <= self._done

    def wait(self, timeout: float | None = None) -> None:
        """Block until the background compiles started so far are done."""
        for thread in self._threads:
            thread.join(timeout)

    def _failed(self, error: Exception) -> None:
        message = (str(error).strip().splitlines() or [""])[0]
        warnings.warn(
            f"torch.compile failed ({type(error).__name__}: {message}); running without "
            "it (compile=false skips the attempt)",
            stacklevel=3,
        )
        self.compiled = None

    def _compile_on(self, signature: Hashable, args: tuple) -> None:
        with _COMPILE_LOCK:
            try:
                if self.compiled is not None:
                    with torch.inference_mode():
                        self.compiled(*args)
            except Exception as error:  # any failure leaves play uncompiled, never stuck
                self._failed(error)
            finally:
                self._done.add(signature)

    def __call__(self, *args: torch.Tensor) -> Any:
        if self.compiled is None:
            return self.fn(*args)
        if self.background:
            signature = _signature(args)
            if signature not in self._done:
                if signature not in self._seen:
                    self._seen.add(signature)
                    thread = threading.Thread(
                        target=self._compile_on, args=(signature, args), daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()
                return self.fn(*args)
        try:
            return self.compiled(*args)
        except torch._dynamo.exc.TorchDynamoException as error:  # Inductor/backend failures too
            self._failed(error)
            return self.fn(*args)
