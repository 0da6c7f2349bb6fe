"""Deterministic kernels and the interrupt signals of a training run."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

import torch


@contextlib.contextmanager
def deterministic_mode(enabled: bool = True) -> Iterator[None]:
    r"""Runs the ``with`` block with deterministic kernels only, then
    restores the previous settings.

    Sets :func:`torch.use_deterministic_algorithms`, turns cuDNN
    benchmarking off and cuDNN determinism on, and sets
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (unless already set) for cuBLAS,
    which reads it when CUDA is first used in the process. An operation
    without a deterministic implementation then raises a
    :class:`RuntimeError` instead of running. Seeds are not touched: seed
    the run as usual (e.g. :func:`~graphrec.train.seed_everything` and
    :obj:`TrainConfig.seed`).

    Args:
        enabled (bool): :obj:`False` makes this a no-op.
            (default: :obj:`True`)

    Example:
        >>> with deterministic_mode():
        ...     torch.are_deterministic_algorithms_enabled()
        True
    """
    if not enabled:
        yield
        return
    cudnn = torch.backends.cudnn
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
                cudnn.deterministic, cudnn.benchmark,
                os.environ.get('CUBLAS_WORKSPACE_CONFIG'))
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    torch.use_deterministic_algorithms(True)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0],
                                           warn_only=previous[1])
        cudnn.deterministic, cudnn.benchmark = previous[2], previous[3]
        if previous[4] is None:
            os.environ.pop('CUBLAS_WORKSPACE_CONFIG', None)


class SignalInterrupt(KeyboardInterrupt):
    r"""Raised in the main thread by a signal that
    :func:`signals_as_interrupts` handles.

    Args:
        signum (int): The signal number.
    """
    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    r"""Turns ``SIGTERM`` into a :class:`SignalInterrupt` (a
    :class:`KeyboardInterrupt`, like ``SIGINT``) for the ``with`` block, so
    that ``finally`` clauses and interrupt handlers run on either.

    Only in the main thread, and only when ``SIGTERM`` has its default
    action: a handler the program installed itself, or an ignored signal,
    is left alone. The previous action is restored on exit.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def handler(signum, frame):
        raise SignalInterrupt(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def interrupt_signal(error: KeyboardInterrupt) -> int:
    r"""The signal number behind :obj:`error`: its own for a
    :class:`SignalInterrupt`, ``SIGINT`` for a plain
    :class:`KeyboardInterrupt`.
    """
    return getattr(error, 'signum', int(signal.SIGINT))
