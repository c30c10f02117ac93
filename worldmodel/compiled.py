"""torch.compile where it works, eager where it does not, and in the background for play."""

import threading
import warnings
from collections.abc import Callable
from typing import Any

import torch


class CompiledOrEager:
    """`fn` through torch.compile (static shapes); if compiling fails, e.g. with no C++
    compiler on the machine, warn once and call `fn` as it is from then on.

    `background=True` compiles without making the caller wait (the play window shows at
    once): the first call starts compiling in a thread, on copies of its arguments, and
    calls run `fn` eagerly until the compiled graph is ready. Compiling is slow Python work
    (20-60 s on 2 CPU cores), so the eager frames are slower until it is done."""

    def __init__(self, fn: Callable[..., Any], compile: bool, background: bool = False) -> None:
        self.fn = fn
        self.compiled = torch.compile(fn, dynamic=False) if compile else None
        self.background = background
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        """Whether calls now go through the compiled graph."""
        return self.compiled is not None and (not self.background or self._ready.is_set())

    def _failed(self, error: Exception) -> None:
        message = (str(error).strip().splitlines() or [""])[0]
        warnings.warn(
            f"torch.compile failed ({type(error).__name__}: {message}); running without "
            "it (compile=false skips the attempt)",
            stacklevel=3,
        )
        self.compiled = None

    @property
    def pending(self) -> bool:
        """Whether a background compile is still under way."""
        return self.compiled is not None and self.background and not self._ready.is_set()

    def _compile_on(self, args: tuple) -> None:
        try:
            with torch.inference_mode():
                self.compiled(*args)
        except Exception as error:  # any failure leaves play uncompiled, never stuck
            self._failed(error)
        finally:
            self._ready.set()

    def __call__(self, *args: torch.Tensor) -> Any:
        if self.compiled is None:
            return self.fn(*args)
        if self.background and not self._ready.is_set():
            if self._thread is None:
                copies = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
                self._thread = threading.Thread(
                    target=self._compile_on, args=(copies,), daemon=True
                )
                self._thread.start()
            return self.fn(*args)
        try:
            return self.compiled(*args)
        except torch._dynamo.exc.TorchDynamoException as error:  # Inductor/backend failures too
            self._failed(error)
            return self.fn(*args)
