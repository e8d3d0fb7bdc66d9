"""HelloDataset: a torch Dataset over a ``.hello`` bundle whose batches are augmented and labelled.

The pipeline is declared once and runs the same every batch:

    decode (each image once, on first use) -> uint8 images resident on the device
    -> augment (crop, flip, patch shuffle, CutMix/Mixup; parameters from a CPU generator)
    -> label (the projector on exactly the augmented, mixed batch)

Two ways in. ``DataLoader(ds, batch_size=..., shuffle=True)`` fetches batches through
``__getitems__`` (on a CPU device also in worker processes; on a GPU in the main process, since
labelling runs there), each batch's views drawn from (seed, ``set_epoch``'s epoch, rank, its indices), so
the same in any worker. The native ``ds.loader(...)`` never leaves the device, shards for
``torch.distributed`` and is seeded per epoch. Both give ``LabelledBatch(images, soft_labels,
hard_labels)``; ``ds[i]`` and anything that reads the dataset row by row (``DataLoader(ds,
batch_size=None)``, ``ConcatDataset``) get the stored image and its class instead, unaugmented.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
from torch.utils.data import Dataset, get_worker_info

from hello_format.augment import AugmentConfig, augment_batch, mix_targets
from hello_format.codecs import LazyImages
from hello_format.errors import HelloError
from hello_format.hub.resolver import open_bundle
from hello_format.labelling import LabelOptions, ahead
from hello_format.projector import Projector
from hello_format.recipe import Recipe
from hello_format.runtime import (MAX_SEED, ORDER_SALT, batch_seed, batch_share, epoch_seed, host_default,
                                   resolve_device, view_seed)
from hello_format.text import shortened, warn


class LabelledBatch(NamedTuple):
    """What the student trains on (a batch, or one row of it inside a DataLoader)."""

    images: torch.Tensor  # float32 [B, C, S, S]: the augmented view, in [0, 1] unless normalize= was given
    soft_labels: torch.Tensor  # float32 [B, K]: projector logits for exactly ``images``
    hard_labels: torch.Tensor  # float32 [B, K]: one-hot targets, mixed like ``images`` by CutMix/Mixup


class LabelledImages(Dataset):
    """Stored uint8 images whose batches are augmented on the device and labelled by ``labeller``.

    ``images``: uint8 [N, C, H, W], decoded or ``LazyImages`` (decoded on first use). ``labeller`` maps
    the augmented float batch to logits [B, K] (the projector, a teacher, ...), or is None for hard
    labels only (then ``soft_labels`` is an empty [B, 0] tensor). HelloDataset is this over a bundle
    with its projector; evaluation baselines reuse it with other labellers.
    """

    @host_default
    def __init__(
        self,
        images: torch.Tensor | LazyImages,
        labels: torch.Tensor,
        class_names: Sequence[str],
        augment: AugmentConfig,
        labeller=None,
        *,
        device: str | torch.device | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    ):
        self.device = resolve_device(device)
        self.class_names = list(class_names)
        self.augment = augment
        self.labeller = labeller
        self._images = images.to(self.device)
        self._labels = labels.to(self.device)
        self.seed = _count("seed", seed, at_least=0, at_most=MAX_SEED)
        self._shard_given = _checked_shard(rank, world_size)
        self._normalize = _normalizer(normalize, self._images.shape[1], self.device)
        # in shared memory: set_epoch reaches DataLoader workers that persist from one epoch to the next
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._sender_rank = None   # in a spawned worker: the rank of the process that sent the dataset
        self.prefetch = False  # ds.loader()'s default: label the next batch while this one is used

    @property
    def rank(self) -> int:
        return self.rank_and_world_size()[0]

    @property
    def world_size(self) -> int:
        return self.rank_and_world_size()[1]

    def rank_and_world_size(self) -> tuple[int, int]:
        """(rank, world_size) that ``loader`` serves: as given, the missing ones from the process group
        initialised at the time of the call (so a dataset made before ``init_process_group`` shards too)."""
        return _resolved_shard(*self._shard_given)

    def __getstate__(self) -> dict:
        """For DataLoader workers started by spawn or forkserver, which join no process group: the rank
        travels with the dataset (without it every rank's workers would draw rank 0's views)."""
        return dict(self.__dict__, _sender_rank=self._rank_now())

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._epoch.share_memory_()   # a copy's (deepcopy) own epoch, shared with its persistent workers too

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self._labels)

    @host_default
    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """One stored image (uint8 [C,H,W], on the CPU) and its hard label, for inspection."""
        position = _integer(index)
        if position is None:
            raise TypeError(f"ds[i] takes one integer index (the stored image and its class), got {shortened(index)}: "
                            "for labelled batches use ds.loader(...) or DataLoader(ds, batch_size=...)")
        if not -len(self) <= position < len(self):
            raise IndexError(f"index {position} is out of range for {len(self)} images")
        return self._images[position].cpu(), int(self._labels[position])

    @host_default
    def __getitems__(self, indices: Sequence[int]) -> list[LabelledBatch]:
        """A batch augmented and labelled together, split into rows for the DataLoader to collate.

        Its views are drawn from ``batch_seed`` of (seed, epoch, rank, the batch's indices in order): the
        same in the main process and in any worker, whatever their number, start method or persistence,
        and ``set_epoch(k)`` repeats epoch k. As with DistributedSampler, call ``set_epoch`` every epoch:
        without it an unshuffled loader sees the same views each epoch.
        """
        worker = get_worker_info()
        if worker is not None and self.device.type == "cuda":
            raise HelloError("HelloDataset labels on the GPU in the main process: use DataLoader(num_workers=0) "
                             "(pin_memory off: its batches are on the GPU) or ds.loader()")
        indices = torch.as_tensor(list(indices), dtype=torch.long)
        generator = torch.Generator().manual_seed(batch_seed(self.seed, self.epoch, self._rank_now(), indices))
        return [LabelledBatch(*row) for row in zip(*self.batch(indices, generator))]

    @property
    def epoch(self) -> int:
        """The epoch set (``set_epoch``), or that ``loader()`` passes have reached; 0 at first."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Go to ``epoch``: the one the next ``loader()`` without ``start_epoch`` begins at, and the one the
        DataLoader path's augmentation is seeded for, this rank's own (as DistributedSampler.set_epoch does
        for order)."""
        self._epoch.fill_(_epoch_number(epoch))

    def _rank_now(self) -> int:
        """This process's rank as far as it is known yet (given, else the process group's, else the
        sending process's in a spawned worker, else 0)."""
        rank = self._shard_given[0]
        if rank is None and torch.distributed.is_available() and torch.distributed.is_initialized():
            rank = torch.distributed.get_rank()
        return (self._sender_rank if rank is None else rank) or 0

    def batch(self, indices: torch.Tensor, generator: torch.Generator) -> LabelledBatch:
        """Augment the images at ``indices`` and label exactly that view."""
        indices = indices.to(self.device)
        return self.label(indices, self.view(indices, generator))

    @host_default
    def view(self, indices: torch.Tensor, generator: torch.Generator):
        """The augmented view (an ``AugmentedBatch``) of the images at ``indices`` (on the device)."""
        return augment_batch(self._images[indices], self.augment, generator)

    @host_default
    def label(self, indices: torch.Tensor, view, rows: slice = slice(None)) -> LabelledBatch:
        """The student's batch for an augmented ``view`` of the images at ``indices``: its ``rows`` only
        (only those are labelled)."""
        labels_a, labels_b, lam = mix_targets(self._labels[indices], view.mix)
        labels_a, labels_b, images = labels_a[rows, None], labels_b[rows, None], view.images[rows]
        # lam * one_hot(a) + (1 - lam) * one_hot(b), built in one float tensor (one-hots are int64)
        hard = torch.zeros(len(images), self.num_classes, device=images.device, dtype=torch.float32)
        hard.scatter_(1, labels_a, lam)
        hard.scatter_add_(1, labels_b, torch.full_like(labels_b, 1 - lam, dtype=hard.dtype))
        if self.labeller is None:
            soft = torch.empty(len(images), 0, device=self.device, dtype=torch.float32)
        else:   # on a rank's empty share too (split_batches): a stored-label replay counts every batch
            soft = self.labeller(images)
        if self._normalize is not None:
            mean, std = self._normalize
            images = (images - mean) / std
        return LabelledBatch(images, soft, hard)

    def loader(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int | None = None,
        epochs: int = 1,
        drop_last: bool = False,
        start_epoch: int | None = None,
        prefetch: bool | None = None,
        split_batches: bool = False,
    ) -> BatchLoader:
        """Batches that stay on the device: this rank's shard of each epoch, seeded by (seed, epoch, rank).
        Epochs go on from one pass to the next: without ``start_epoch`` a pass begins at the dataset's
        epoch (``set_epoch``; 0 at first) and each epoch whose last batch it hands over moves that on, so
        ``for epoch in range(n): for batch in loader`` sees n different epochs, as a shuffling DataLoader
        would, and a pass left before an epoch's last batch moves nothing; ``start_epoch=k``
        always gives epochs k, k + 1, ... (resuming) and moves nothing.
        ``prefetch`` (default: the dataset's) labels the next batch while the caller uses this one:
        the same batches in the same order. Without ``split_batches`` each rank reads its own images, with
        its own augmentation draws. ``split_batches``: every rank walks the same global batches
        of ``batch_size`` (the same order and augmented views for any world size) and gets its own
        contiguous rows of each, labelled; with DDP averaging gradients, training is the single-process one.
        A loader that would have no batch (no images, or ``drop_last`` with fewer than a batch) is refused."""
        seed = self.seed if seed is None else _count("seed", seed, at_least=0, at_most=MAX_SEED)
        return BatchLoader(self, batch_size, shuffle, seed, epochs, drop_last, start_epoch,
                           self.prefetch if prefetch is None else prefetch, split_batches)


class HelloDataset(LabelledImages):
    """A bundle as a training set whose soft labels are regenerated for every augmented batch.

    Args:
        path: a ``.hello`` file or an ``hf://`` URI.
        device: where images live and labels are computed (default: CUDA if available, else CPU); an
            integer is an accelerator's index, as in torch.
        classes: a subset of class names or indices (class-incremental use); labels are renumbered
            in the given order and soft labels keep only those columns.
        augment: a dict of overrides on the bundle's recorded augmentation (``{"cutmix": 0.0}``), or an
            ``AugmentConfig`` used whole in its place (the fields it leaves out take AugmentConfig's
            defaults, not the bundle's: ``AugmentConfig(cutmix=0.0)`` also sets hflip 0.5 and scale 0.08-1).
        seed: seeds augmentation (and shuffling in ``loader``), 0 to 2**63 - 1; the same seed gives the same batches
            (torch's CPU generator keeps a seed's low 32 bits: so do seeds that differ by a multiple of 2**32).
        rank, world_size: the shard ``loader`` serves; default from an initialised process group.
        normalize: optional (mean, std) applied to the student's images (not to the projector's).
        checkpoint: local safetensors weights for a base that cannot be downloaded.
        verify: check every tensor's sha256 before use (a hub file is always checked, once).
        allow_remote_base: accept a custom base config that makes open_clip fetch a model the file
            names (e.g. text_cfg.hf_model_name); refused by default.
        label_options: the label path's speed options (``LabelOptions`` or a dict of its fields:
            precision, channels_last, compile, prefetch); the resolved ones are ``self.label_options``.
        head_cache: read and write the local cache of text heads (``hello_format.head_cache``: a base's
            head is computed by its text tower once per base, classes and templates); False computes it.
        soft_labels: False builds no projector (the base need not be at hand): batches carry the same
            views and hard labels, and an empty [B, 0] ``soft_labels``; the hard-label baseline.

    ``recipe`` is the bundle's ``Recipe`` (loss, optimizer, epochs, ...), its augmentation the one used.
    Images are read from the file and decoded on first use, so the first batch waits for its own images
    only; an image that does not decode fails the first batch that needs it (``hello verify`` decodes
    them all), and so does a file truncated or rewritten in place meanwhile (one renamed over the path
    leaves the open one readable).
    """

    @host_default
    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        classes: Sequence[str | int] | None = None,
        augment: AugmentConfig | dict | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        normalize: tuple[Sequence[float], Sequence[float]] | None = None,
        checkpoint: str | os.PathLike | None = None,
        verify: bool = True,
        allow_remote_base: bool = False,
        label_options: LabelOptions | dict | None = None,
        head_cache: bool = True,
        soft_labels: bool = True,
    ):
        device = resolve_device(device)
        if label_options is not None and not soft_labels:   # as the commands say of an input they do not use
            warn("hello: soft_labels=False labels nothing: label_options is not used")
        label_options = LabelOptions.of(label_options)  # a bad option fails before the bundle is read
        with open_bundle(path, verify=verify) as bundle:
            self.manifest = bundle.manifest
            names = bundle.class_names
            # the recipe and the classes asked for are checked before anything is decoded or built
            self.recipe = Recipe.from_manifest(self.manifest["recipe"], augment=augment)
            self.recipe.augment.patch_factor(*bundle.image_shape[2:])   # an override's factor too
            columns = _class_columns(classes, names)
            labels = bundle.labels
            keep = torch.isin(labels, torch.tensor(columns))
            # only the kept classes' images, made where they are used (all of them made on a GPU, then the
            # kept ones again, held the whole decoded size there twice)
            images = bundle.lazy_images(device, None if bool(keep.all()) else keep)
            self.projector = Projector.from_bundle(bundle, device=device, checkpoint=checkpoint, verify=verify,
                                                   allow_remote_base=allow_remote_base, use_head_cache=head_cache) \
                if soft_labels else None
        # the resolved speed options (None without a projector)
        self.label_options = self.projector.prepare_labelling(label_options) if self.projector is not None else None
        renumber = torch.full((len(names),), -1, dtype=torch.long)
        renumber[torch.tensor(columns)] = torch.arange(len(columns))
        self._columns = None if columns == list(range(len(names))) else torch.tensor(columns, device=device)
        super().__init__(
            images, renumber[labels[keep]], [names[c] for c in columns],
            self.recipe.augment, None if self.projector is None else self._label,
            device=device, seed=seed, rank=rank, world_size=world_size, normalize=normalize,
        )
        self.prefetch = bool(self.label_options and self.label_options.prefetch)

    def _label(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.projector.label(images)
        return logits if self._columns is None else logits[:, self._columns]


class BatchLoader:
    """Iterable over ``epochs`` epochs of device-resident batches; ``len()`` is the batch count."""

    def __init__(self, dataset: LabelledImages, batch_size: int, shuffle: bool, seed: int, epochs: int, drop_last: bool,
                 start_epoch: int | None, prefetch: bool = False, split_batches: bool = False):
        batch_size, epochs = _count("batch_size", batch_size), _count("epochs", epochs)
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.seed, self.epochs, self.drop_last = seed, epochs, drop_last
        # as set_epoch takes it
        self.start_epoch = None if start_epoch is None else _epoch_number(start_epoch, "start_epoch")
        self.prefetch, self.split_batches = prefetch, split_batches
        self.rank, self.world_size = dataset.rank_and_world_size()   # fixed for the loader's life: every epoch shards alike
        if not self.batch_sizes():   # each epoch would train on nothing
            world = "" if split_batches or self.world_size == 1 else f" over {self.world_size} ranks"
            fix = "drop_last=False" if batch_size == 1 else "a smaller batch_size or drop_last=False"
            raise HelloError(f"no batch: {len(dataset):,} images{world} in batches of {batch_size}"
                             + (f" with drop_last: pass {fix}" if drop_last else ""))

    @host_default
    def shard(self, epoch: int) -> torch.Tensor:
        """The indices this rank reads in ``epoch``. Ranks stay in step, with as many batches each (DDP
        needs that): with ``drop_last`` the set is cut to a multiple of world_size, else its order is
        padded to one by repeating its first indices, as torch's DistributedSampler does; ranks are
        disjoint but for that padding. With ``split_batches``, the whole epoch: ranks split each batch
        instead (``rows``)."""
        n, world = len(self.dataset), self.world_size
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(self.seed, epoch) ^ ORDER_SALT))
        else:
            order = torch.arange(n)
        if self.split_batches:
            return order
        if self.drop_last:
            order = order[: n - n % world]
        elif n % world:
            order = torch.cat([order, order.repeat(world)[: world - n % world]])
        return order[self.rank :: world]

    def rows(self, size: int) -> slice:
        """This rank's rows of a batch of ``size``: all of them, or with ``split_batches`` a contiguous
        share (sizes differ by at most one; a share may be empty)."""
        return batch_share(size, self.rank, self.world_size) if self.split_batches else slice(None)

    def batch_sizes(self) -> list[int]:
        """The size of each batch of an epoch (before ``rows``), in order (the same every epoch)."""
        n = len(self.shard(0))
        stop = n - n % self.batch_size if self.drop_last else n
        return [min(self.batch_size, n - start) for start in range(0, stop, self.batch_size)]

    def batches_per_epoch(self) -> int:
        return len(self.batch_sizes())

    def __len__(self) -> int:
        return self.batches_per_epoch() * self.epochs

    def first_epoch(self) -> int:
        """The epoch the next pass begins at: ``start_epoch``, else the dataset's."""
        return self.dataset.epoch if self.start_epoch is None else self.start_epoch

    def views(self, first: int | None = None):
        """(epoch, indices, augmented view) for every batch of a pass from epoch ``first`` (default
        ``first_epoch()``), in order: the labels' replay key. Each rank draws its own views, but with
        ``split_batches`` all ranks draw the global batch's."""
        return self._views(self.first_epoch() if first is None else first)   # resolved now, not at the first next()

    def _views(self, first: int, *, advances: bool = False):
        """``views``' batches from epoch ``first``; ``advances``: the pass then sets the dataset's epoch to the
        one after its last. Checked here, before the first batch: an epoch is below 2**63."""
        if first + self.epochs - 1 + advances >= 2**63:
            raise HelloError(f"a pass of {self.epochs:,} epoch(s) from epoch {first:,} would reach epoch 2**63 "
                             "(epochs are below it): set_epoch() or start_epoch= an earlier one")
        return self._epoch_views(first)

    def _epoch_views(self, first: int):
        rank = 0 if self.split_batches else self.rank
        for epoch in range(first, first + self.epochs):
            shard = self.shard(epoch).to(self.dataset.device)
            generator = torch.Generator().manual_seed(view_seed(self.seed, epoch, rank))
            stop = len(shard) - len(shard) % self.batch_size if self.drop_last else len(shard)
            for start in range(0, stop, self.batch_size):
                indices = shard[start : start + self.batch_size]
                yield epoch, indices, self.dataset.view(indices, generator)

    def __iter__(self) -> Iterator[LabelledBatch]:
        make = lambda item: self.dataset.label(item[1], item[2], self.rows(len(item[1])))  # noqa: E731  (item: epoch, indices, view)
        first, per_epoch = self.first_epoch(), self.batches_per_epoch()
        views = self._views(first, advances=self.start_epoch is None)
        batches = ahead(views, make, self.dataset.device) if self.prefetch else map(make, views)
        for number, batch in enumerate(batches, start=1):
            if self.start_epoch is None and number % per_epoch == 0:   # an epoch's last batch: the next pass goes on after it
                self.dataset.set_epoch(first + number // per_epoch)
            yield batch


def _class_columns(classes: Sequence[str | int] | None, names: list[str]) -> list[int]:
    if classes is None:
        return list(range(len(names)))
    if isinstance(classes, (str, bytes)):   # iterating it would select classes letter by letter
        raise HelloError(f"classes= takes a list of class names or indices, not one string: "
                         f"pass [{shortened(classes)}]")
    columns, position = [], {name: i for i, name in enumerate(names)}   # one lookup per class, not a scan
    for c in classes:
        if isinstance(c, str):
            if c not in position:
                raise HelloError(f"class {shortened(c)} is not in this bundle; it has {len(names):,}: {shortened(names)}")
            columns.append(position[c])
            continue
        index = _integer(c)
        if index is None:
            raise HelloError(f"classes= holds {shortened(c)}: each entry is a class name or an integer index")
        if not 0 <= index < len(names):
            raise HelloError(f"class index {index} is out of range: this bundle has {len(names)} classes")
        columns.append(index)
    if len(set(columns)) != len(columns) or not columns:
        raise HelloError("classes= must name at least one class, each once")
    return columns


def _integer(value) -> int | None:
    """``value`` as an int when it is one: an int, a numpy integer or a 0-d integer tensor; not a bool or a float."""
    try:
        return None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        return None


def _count(name: str, value, at_least: int = 1, at_most: int | None = None) -> int:
    """``value`` as an int in [``at_least``, ``at_most``] (``batch_size``, ``epochs``, ``rank``), else one clear error."""
    count = _integer(value)
    if count is None or count < at_least:
        raise HelloError(f"{name} must be an integer of at least {at_least}, got {shortened(value)}")
    if at_most is not None and count > at_most:
        raise HelloError(f"{name} must be at most {at_most:,}, got {shortened(value)}")
    return count


def _epoch_number(epoch, name: str = "epoch") -> int:
    """``epoch`` (``set_epoch``'s, ``loader``'s ``start_epoch``) as an int in [0, 2**63), else one clear error
    naming the argument ``name``."""
    epoch = _count(name, epoch, at_least=0)
    if epoch >= 2**63:
        raise HelloError(f"{name} must be below 2**63, got {shortened(epoch)}")
    return epoch


def _checked_shard(rank, world_size) -> tuple[int | None, int | None]:
    """``rank`` and ``world_size`` as given (None: from the process group when used), checked."""
    world_size = None if world_size is None else _count("world_size", world_size)
    if rank is not None:
        rank = _count("rank", rank, at_least=0)
        if world_size is not None and rank >= world_size:
            raise HelloError(f"rank {rank} is not in [0, world_size={world_size})")
    return rank, world_size


def _resolved_shard(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """The shard: the given values, the missing ones from an initialised process group, else 0 of 1."""
    group = torch.distributed.is_available() and torch.distributed.is_initialized()
    if group:
        rank = torch.distributed.get_rank() if rank is None else rank
        world_size = torch.distributed.get_world_size() if world_size is None else world_size
    elif world_size is not None and world_size > 1 and rank is None:
        raise HelloError(f"world_size={world_size} without rank and without an initialised process group: "
                         "pass rank= too, or init_process_group first")
    elif world_size is None and rank:
        raise HelloError(f"rank {rank} is not in [0, world_size=1): without world_size= and an initialised process "
                         "group there is one process; pass world_size= too, or init_process_group first")
    elif world_size is None and rank is None and (launched := _launched_world_size()) > 1:
        warn(f"WORLD_SIZE={launched} (a launcher such as torchrun) but no initialised process "
             "group: this process serves the whole dataset as rank 0 of 1, as every other one does; call "
             "torch.distributed.init_process_group() first, or pass rank= and world_size=")
    rank, world_size = rank or 0, world_size or 1
    if not rank < world_size:
        raise HelloError(f"rank {rank} is not in [0, world_size={world_size})")
    return rank, world_size


def _launched_world_size() -> int:
    """The process count a launcher announced in ``WORLD_SIZE`` (torchrun sets it), 1 when unset or not a count."""
    value = os.environ.get("WORLD_SIZE", "")
    return int(value) if value.isdecimal() and len(value) <= 9 else 1


def _normalizer(normalize, channels: int, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The student's normalisation as (mean, std) [1, K, 1, 1] (None: none): K finite values each, std > 0,
    with K one per channel, one for all, or 3 for grey images (which the normalisation then makes
    3-channel, as hello eval's students take them); tensors, not a closure: the dataset pickles for
    spawned DataLoader workers."""
    if normalize is None:
        return None
    try:
        mean, std = (torch.as_tensor(values, dtype=torch.float64).flatten() for values in normalize)
    except (TypeError, ValueError, RuntimeError):
        mean = std = None
    allowed = {1, channels} | ({3} if channels == 1 else set())
    if (mean is None or len(mean) != len(std) or len(mean) not in allowed or not torch.isfinite(mean).all()
            or not torch.isfinite(std).all() or not (std > 0).all()):
        raise HelloError(f"normalize must be (mean, std) with {' or '.join(map(str, sorted(allowed)))} finite values "
                         f"each and std > 0, got {shortened(normalize)}")
    return tuple(v.to(device, torch.float32).view(1, -1, 1, 1) for v in (mean, std))
