"""How the projector labels a batch fast: the options of the label path, and labelling ahead.

``LabelOptions`` is the only home of the label path's defaults; ``"auto"`` values are resolved once
per device by ``resolve``. None of them changes which labels a batch gets beyond the precision's
rounding (bf16 against fp32: measured in bench/loader.py and bounded in tests/test_labelling.py).
``ahead`` labels batch i+1 in a background thread (on CUDA, on its own stream) while the caller
trains on batch i; the batches, their order and their labels are those of the plain loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import torch

from hello_format.errors import HelloError
from hello_format.text import shortened

T = TypeVar("T")

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device) -> str:
    """``precision`` for ``device``: ``auto`` is bf16 on CUDA and fp32 on CPUs (the one home of that rule:
    CPU runs are where figures are reproduced, and CPU bf16 would tie them to the instruction set)."""
    if precision not in PRECISIONS:
        raise HelloError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if torch.device(device).type == "cuda" else "fp32"


def autocast(device, precision: str):
    """bf16 autocast on ``device`` where ``precision`` resolves to bf16 there, else a no-op context."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolve_precision(precision, device) == "bf16")


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512-bf16 or AMX), where bf16 autocast pays."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


@dataclass(frozen=True)
class LabelOptions:
    """Speed options of the label path (each measured in bench/loader.py).

    precision: ``bf16`` autocast or ``fp32``; ``auto`` is bf16 on CUDA and fp32 on CPUs. On a CPU with
        native bf16 (AVX-512-bf16) bf16 is 1.5-2x faster with the same top-1 labels (bench/loader.py),
        but opt-in: CPU runs are where figures are reproduced, and bf16 there would make a command's
        labels depend on the CPU's instruction set.
    channels_last: conv bases' weights and inputs in NHWC; ``auto`` on CUDA only, opt-in on a CPU, where
        it labels 1.10x (CIFAR stand-in) and 1.18x (RN50) as fast in fp32, 1.20x and 1.25x with bf16
        (bench/loader.py). hello-build fits a conv base with it by default (``--channels-last``).
    compile: ``torch.compile`` the merged encoder (opt-in: the first batch pays the compile time).
    prefetch: label the next batch while the caller trains on this one (``ds.loader()`` only);
        ``auto`` on CUDA only, where it runs on a side stream and hides the label path's syncs (on a
        2-core CPU the thread only competes with the student's step: no gain, measured).
    """

    precision: str = "auto"
    channels_last: bool | str = "auto"
    compile: bool = False
    prefetch: bool | str = "auto"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise HelloError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("channels_last", "prefetch"):
            if getattr(self, name) not in (True, False, "auto"):
                raise HelloError(f"{name} must be true, false or 'auto', got {getattr(self, name)!r}")
        if not isinstance(self.compile, bool):
            raise HelloError(f"compile must be true or false, got {self.compile!r}")

    @classmethod
    def of(cls, value: "LabelOptions | dict | None") -> "LabelOptions":
        """``value`` as LabelOptions: itself, a dict of fields, or None for the defaults."""
        if isinstance(value, cls):
            return value
        if value is not None and not isinstance(value, dict):
            raise HelloError(f"label_options must be a LabelOptions or a dict of its fields, got {shortened(value)}")
        unknown = sorted(set(value or {}) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise HelloError(f"unknown label option {unknown[0]!r}; known: {', '.join(f.name for f in dataclasses.fields(cls))}")
        return cls(**(value or {}))

    def resolve(self, device: torch.device, *, conv_base: bool) -> "LabelOptions":
        """Every ``auto`` replaced by its value for ``device`` and the base's family."""
        cuda = torch.device(device).type == "cuda"
        return LabelOptions(
            precision=resolve_precision(self.precision, device),
            channels_last=(cuda and conv_base) if self.channels_last == "auto" else bool(self.channels_last and conv_base),
            compile=self.compile,
            prefetch=cuda if self.prefetch == "auto" else self.prefetch,
        )


def ahead(items: Iterator[T], make: Callable[[T], object], device: torch.device) -> Iterator:
    """``make(item)`` for each of ``items`` in order, each computed while the previous one is used.

    One background thread draws the items and makes them strictly in order (so seeded generators
    advance exactly as in a plain loop). On CUDA both the drawing (a batch's indices, decoding and
    augmentation) and the making run on its own stream, which first waits for the work the caller
    had queued (the images, the projector); the caller's stream waits for it before a result is handed
    over, and the result's memory is marked as used there. (Drawing on the thread's default stream
    raced the labels against the student's step, and on a rank's GPU other than 0 put the indices on
    GPU 0: the thread's current device is its own.)
    """
    device = torch.device(device)
    stream = None
    if device.type == "cuda":
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
    done = object()

    def produce():
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            item = next(items, done)
            if item is done:
                return done, None
            made = make(item)
            if stream is None:
                return made, None
            event = torch.cuda.Event()
            event.record(stream)
        return made, event

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hello-labels") as pool:
        pending = pool.submit(produce)
        while True:
            made, event = pending.result()
            if made is done:
                return
            pending = pool.submit(produce)
            if event is not None:
                current = torch.cuda.current_stream(device)
                current.wait_event(event)
                for tensor in made:
                    tensor.record_stream(current)
            yield made
