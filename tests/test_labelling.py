"""The label path's speed options: each changes the labels by at most its precision's rounding, and
labelling ahead gives the very batches of the plain loop."""

import contextlib
import threading

import pytest
import torch
from support import write_labelled_bundle

from hello_format.dataset import HelloDataset
from hello_format.errors import BundleError, HelloError
from hello_format.labelling import LabelOptions, autocast, resolve_precision


@pytest.fixture(scope="module")
def rn_bundle(tmp_path_factory):
    return write_labelled_bundle(tmp_path_factory.mktemp("labelling") / "rn.hello", "rn", seed=5)


def batches(ds, **loader):
    return [tuple(t.clone() for t in batch) for batch in ds.loader(5, epochs=2, start_epoch=0, **loader)]


def test_defaults_resolve_per_device_and_family():
    cpu = LabelOptions().resolve(torch.device("cpu"), conv_base=True)
    assert cpu == LabelOptions(precision="fp32", channels_last=False, compile=False, prefetch=False)
    cuda_conv = LabelOptions().resolve(torch.device("cuda"), conv_base=True)
    assert cuda_conv == LabelOptions(precision="bf16", channels_last=True, compile=False, prefetch=True)
    assert LabelOptions().resolve(torch.device("cuda"), conv_base=False).channels_last is False
    assert LabelOptions(channels_last=True).resolve(torch.device("cpu"), conv_base=False).channels_last is False


def test_one_precision_rule_for_every_path():
    assert [resolve_precision("auto", d) for d in ("cpu", "cuda")] == ["fp32", "bf16"]
    assert [resolve_precision(p, "cpu") for p in ("fp32", "bf16")] == ["fp32", "bf16"]
    with pytest.raises(HelloError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")
    x = torch.ones(2, 2)
    dtypes = []
    for precision in ("auto", "fp32", "bf16"):
        with autocast("cpu", precision):
            dtypes.append((x @ x).dtype)
    assert dtypes == [torch.float32, torch.float32, torch.bfloat16]


@pytest.mark.parametrize("bad", [{"precision": "fp16"}, {"prefetch": "yes"}, {"compile": "auto"}, {"speed": 2}])
def test_bad_options_are_refused_before_the_bundle_is_read(bad, tmp_path):
    with pytest.raises(HelloError, match=next(iter(bad))):
        HelloDataset(tmp_path / "absent.hello", device="cpu", label_options=bad)


def test_prefetch_gives_the_plain_loops_batches(rn_bundle):
    ds = HelloDataset(rn_bundle, device="cpu", seed=3)
    plain = batches(ds, prefetch=False)
    ahead = batches(ds, prefetch=True)
    assert len(plain) == len(ahead) == 2 * 3
    for a, b in zip(plain, ahead):
        for x, y in zip(a, b):
            assert torch.equal(x, y)


def test_prefetch_draws_and_labels_each_batch_on_its_side_stream(monkeypatch):
    """On CUDA the batch was drawn (indices, decode, augmentation) on the labelling thread's default
    stream, the student's, and labelled on the side stream, which never waited for it: labels of pixels
    not yet written (found by a review of the GPU paths; torch.cuda's stream API faked here, on a CPU)."""
    from hello_format import dataset as dataset_module
    from hello_format.augment import AugmentConfig
    from hello_format.labelling import ahead

    inside, log = threading.local(), []

    class Stream:
        def __init__(self, device=None):
            self.device = device

        def wait_stream(self, other):
            log.append(("side stream waits for the caller's", threading.current_thread().name))

        def wait_event(self, event):
            pass

    class Event:
        def record(self, stream=None):
            pass

    @contextlib.contextmanager
    def on(stream):
        inside.side = True
        try:
            yield
        finally:
            inside.side = False

    def where(what):
        log.append((what, getattr(inside, "side", False)))

    callers = Stream()
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "stream", on)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: callers)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, stream: None)
    augment = dataset_module.augment_batch
    monkeypatch.setattr(dataset_module, "augment_batch", lambda *a, **k: where("augment") or augment(*a, **k))
    images = torch.randint(0, 255, (8, 3, 16, 16), dtype=torch.uint8)
    ds = dataset_module.LabelledImages(images, torch.arange(8) % 2, ["a", "b"], AugmentConfig(),
                                       lambda views: where("label") or torch.zeros(len(views), 2), device="cpu")
    loader = ds.loader(4, epochs=1, start_epoch=0)
    made = list(ahead(loader.views(), lambda item: ds.label(item[1], item[2], loader.rows(len(item[1]))),
                      torch.device("cuda")))
    assert len(made) == 2
    assert log[0] == ("side stream waits for the caller's", threading.current_thread().name)
    assert log[1:] == [("augment", True), ("label", True)] * 2, log


def test_prefetch_stops_cleanly_and_passes_errors_on(rn_bundle):
    ds = HelloDataset(rn_bundle, device="cpu", label_options={"prefetch": True})
    assert ds.prefetch
    labelled, label = [], ds.projector.label
    ds.projector.label = lambda images: labelled.append(len(images)) or label(images)
    for count, _ in enumerate(ds.loader(5, epochs=50), 1):
        if count == 2:
            break  # an abandoned loader must not hang or keep labelling
    # the two batches taken and the one made ahead; the labelling thread was joined when the loop let go
    assert len(labelled) <= 3 and not any(t.name.startswith("hello-labels") for t in threading.enumerate()), labelled
    del ds.projector.label
    ds.projector.mean.fill_(float("nan"))  # every label is NaN now
    with pytest.raises(BundleError, match="non-finite logits"):
        next(iter(ds.loader(5)))


@pytest.mark.parametrize("family", ["rn", "vit"])
def test_bf16_labels_agree_with_fp32(family, tmp_path):
    path = write_labelled_bundle(tmp_path / f"{family}.hello", family, seed=7)
    fp32 = HelloDataset(path, device="cpu", label_options={"precision": "fp32"})
    bf16 = HelloDataset(path, device="cpu", label_options={"precision": "bf16"})
    views = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    reference, rounded = fp32.projector.label(views), bf16.projector.label(views)
    assert rounded.dtype == torch.float32
    assert not torch.equal(reference, rounded)  # bf16 really ran
    spread = float(reference.abs().max())
    assert float((reference - rounded).abs().max()) <= 0.05 * spread
    assert float((reference.argmax(1) == rounded.argmax(1)).float().mean()) >= 0.9


def test_channels_last_changes_nothing_but_the_layout(rn_bundle):
    plain = HelloDataset(rn_bundle, device="cpu")
    nhwc = HelloDataset(rn_bundle, device="cpu", label_options={"channels_last": True})
    assert nhwc.label_options.channels_last
    conv = next(m for m in nhwc.projector.visual.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    views = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(nhwc.projector.label(views), plain.projector.label(views), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_compiled_encoder_labels_like_the_eager_one(rn_bundle):
    eager = HelloDataset(rn_bundle, device="cpu")
    compiled = HelloDataset(rn_bundle, device="cpu", label_options={"compile": True})
    views = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(compiled.projector.label(views), eager.projector.label(views), rtol=1e-4, atol=1e-4)
