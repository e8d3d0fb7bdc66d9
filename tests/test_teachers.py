"""Teachers: zoo shapes, every loader format, refusals, preprocessing, TeacherSet, trajectory training."""

import dataclasses
import hashlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from hello_build.data import scan_image_folder
from hello_build.teacher_training import TeacherTraining, _crop_flip, train_teacher
from hello_build.teachers import Teacher, TeacherSet, check_teacher, load_teacher, save_teacher, zoo_teacher
from hello_build.zoo import create_model, zoo_names
from hello_format.augment import IMAGENET_MEAN, IMAGENET_STD
from hello_build.errors import BuildError


class TinyNet(nn.Module):
    """A small classifier with BatchNorm (so train/eval mode matters)."""

    def __init__(self, num_classes=4):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def tiny_net(num_classes=4, seed=0):
    torch.manual_seed(seed)
    net = TinyNet(num_classes)
    net.bn.running_mean.uniform_(-0.1, 0.1)
    return net.eval()


@pytest.fixture
def images():
    return torch.rand(3, 3, 20, 20, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name, size, batch", [("convnet3", 32, 2), ("convnet3_w32", 32, 2), ("resnet18_32", 32, 2),
                                              ("resnet18_224", 224, 1)])
def test_zoo_output_shapes(name, size, batch):
    model = create_model(name, 7).eval()
    with torch.no_grad():
        assert model(torch.zeros(batch, 3, size, size)).shape == (batch, 7)


def test_zoo_uses_torchvision_resnet_names_and_instance_norm():
    keys = set(create_model("resnet18_224", 10).state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer4.1.bn2.weight", "layer2.0.downsample.0.weight", "fc.bias"} <= keys
    assert create_model("resnet18_224", 10).conv1.kernel_size == (7, 7)
    assert create_model("resnet18_32", 10).conv1.kernel_size == (3, 3)
    convnet = create_model("convnet3", 10)
    norms = [m for m in convnet.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 3 and all(m.num_groups == m.num_channels == 128 and m.affine for m in norms)
    narrow = [m for m in create_model("convnet3_w32", 10).modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in narrow] == [32, 32, 32]
    assert zoo_names() == ["convnet3", "convnet3_w32", "resnet18_224", "resnet18_32"]
    with pytest.raises(BuildError, match="unknown teacher architecture 'vgg'; choose one of convnet3, convnet3_w32, resnet18_224"):
        create_model("vgg", 10)


@pytest.mark.parametrize("name", ["resnet18_224", "resnet18_32"])
def test_zoo_resnets_compute_what_torchvisions_resnet18_computes(name):
    """A torchvision ResNet-18 checkpoint loads unchanged and gives the same logits; the 32 px variant is it
    with the CIFAR stem (3x3 stride-1 conv1, no max-pool)."""
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    reference = models.resnet18(num_classes=7)
    if name == "resnet18_32":
        reference.conv1, reference.maxpool = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False), nn.Identity()
    ours = create_model(name, 7)
    ours.load_state_dict(reference.state_dict())   # strict: the same names and shapes
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(images), reference.eval()(images), atol=1e-5, rtol=1e-5)
    # and initialised as torchvision initialises: He-normal (fan out) convolutions
    conv = create_model(name, 7).layer3[0].conv2
    assert conv.weight.std().item() == pytest.approx((2 / (conv.out_channels * 9)) ** 0.5, rel=0.05)


def test_zoo_convnets_are_conv_norm_relu_avgpool_blocks_for_multiples_of_8():
    for name, width in (("convnet3", 128), ("convnet3_w32", 32)):
        convnet = create_model(name, 10, image_size=16)
        kinds = [type(m) for m in convnet.features]
        assert kinds == [nn.Conv2d, nn.GroupNorm, nn.ReLU, nn.AvgPool2d] * 3, name
        assert convnet.classifier.in_features == width * 2 * 2
    for size in (36, 20, 12):   # three halvings floor them: the classifier would read a crop
        with pytest.raises(BuildError, match=f"ConvNet-3 needs an image size divisible by 8, got {size}"):
            create_model("convnet3", 10, image_size=size)


def test_teacher_resizes_and_normalises():
    seen = {}

    class ChannelMeans(nn.Module):
        def forward(self, x):
            seen["shape"] = tuple(x.shape)
            return x.mean(dim=(2, 3))

    teacher = Teacher(ChannelMeans(), input_size=16, description="probe")
    assert teacher.num_classes == 3
    logits = teacher(torch.full((2, 3, 40, 40), 0.5))
    assert seen["shape"] == (2, 3, 16, 16)
    expected = [(0.5 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    assert logits[0].tolist() == pytest.approx(expected, abs=1e-5)
    assert teacher(torch.full((1, 3, 16, 16), 128, dtype=torch.uint8))[0].tolist() == pytest.approx(
        [(128 / 255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)], abs=1e-5)
    plain = Teacher(ChannelMeans(), input_size=16, mean=(0, 0, 0), std=(1, 1, 1))
    assert plain(torch.full((1, 3, 16, 16), 0.25))[0].tolist() == pytest.approx([0.25] * 3)
    assert plain.preprocessing() == {"input_size": 16, "mean": [0.0] * 3, "std": [1.0] * 3}


def test_a_large_batch_is_labelled_in_chunks_in_eval_mode(monkeypatch):
    """hello eval's teacher and stored regimes ran a file's whole batch through the teacher at once: a
    5 MB bundle of 25,000 8-px views asked a 224-px teacher for 15 GB of resized input alone (thirteenth
    audit). In eval mode the batch is labelled in chunks of at most LABEL_CHUNK_PIXELS input pixels, before
    the resize; in training, BatchNorm's statistics stay the whole batch's."""
    from hello_format import limits

    teacher = Teacher(create_model("convnet3", 10, image_size=16), input_size=16, num_classes=10).eval()
    sizes = []
    teacher.net.register_forward_hook(lambda module, inputs, output: sizes.append(tuple(inputs[0].shape)))
    images = torch.rand(10, 3, 8, 8)
    whole = teacher(images)
    monkeypatch.setattr(limits, "LABEL_CHUNK_PIXELS", 3 * 16 * 16 + 1)
    sizes.clear()
    assert torch.allclose(teacher(images), whole, atol=1e-5)
    assert sizes == [(3, 3, 16, 16)] * 3 + [(1, 3, 16, 16)]
    sizes.clear()
    teacher.train()(images)
    assert sizes == [(10, 3, 16, 16)]


def test_torchscript_round_trip(tmp_path, images):
    net = tiny_net()
    path = tmp_path / "teacher.pt"  # TorchScript often uses .pt: detected by content, not extension
    torch.jit.save(torch.jit.script(net), str(path))
    teacher = load_teacher(path, input_size=24, trust_code=True)
    assert teacher.num_classes == 4 and teacher.input_size == 24 and not teacher.training
    assert torch.allclose(teacher(images), Teacher(net, input_size=24)(images), atol=1e-5)
    assert teacher.description.startswith("TorchScript teacher.pt (sha256 ")
    with pytest.raises(BuildError, match="load_teacher.s input_size or image_size"):
        load_teacher(path, trust_code=True)


class _WritesAFile(nn.Module):
    """A TorchScript teacher that creates a file whenever it labels: its own code, compiled into the archive."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, x):
        written = torch.from_file(self.target, shared=True, size=2, dtype=torch.uint8)
        written.fill_(33)
        return x.mean(dim=(2, 3)) + written[0].float() * 0


def test_torchscript_runs_the_files_code_so_it_needs_trust(tmp_path):
    target, path = tmp_path / "written-by-the-teacher", tmp_path / "teacher.pt"
    torch.jit.save(torch.jit.script(_WritesAFile(str(target))), str(path))
    with pytest.raises(BuildError, match="TorchScript archive.*--trust-teacher-code"):
        load_teacher(path, image_size=8, num_classes=3)
    assert not target.exists()
    load_teacher(path, image_size=8, num_classes=3, trust_code=True)
    assert target.read_bytes() == b"!!"  # what trusting it allowed


def test_torch_export_round_trip_and_static_batch_error(tmp_path, images):
    net = tiny_net()
    example = (torch.zeros(2, 3, 24, 24),)
    path = tmp_path / "teacher.pt2"
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(net, example, dynamic_shapes=({0: batch},)), str(path))
    with pytest.raises(BuildError, match="can unpickle.*--trust-teacher-code"):
        load_teacher(path, input_size=24)
    teacher = load_teacher(path, input_size=24, trust_code=True)
    assert torch.allclose(teacher(images), Teacher(net, input_size=24)(images), atol=1e-5)
    assert "torch.export teacher.pt2" in teacher.description
    check_teacher(teacher, 4)
    static = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(1, 3, 24, 24),)), str(static))
    with pytest.raises(BuildError, match="fails on a dummy batch.*dynamic batch dimension"):
        load_teacher(static, input_size=24, trust_code=True)


def test_a_bundle_given_as_the_teacher_is_named_as_one():
    """A .hello bundle is a safetensors file too: it was refused as weights without an architecture, and with
    --teacher-arch as weights of another network, where it is no teacher at all."""
    bundle = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "valid_png.hello"
    for arch in (None, "convnet3"):
        with pytest.raises(BuildError, match=r"valid_png\.hello is a \.hello bundle, not a teacher"):
            load_teacher(bundle, arch=arch)


def test_safetensors_with_zoo_arch_round_trip(tmp_path):
    torch.manual_seed(0)
    net = create_model("convnet3", 5).eval()
    path = tmp_path / "weights.safetensors"
    save_file(net.state_dict(), str(path))
    teacher = load_teacher(path, arch="convnet3")
    batch = torch.rand(2, 3, 32, 32)
    assert teacher.num_classes == 5 and teacher.input_size == 32
    assert torch.allclose(teacher(batch), Teacher(net, input_size=32)(batch), atol=1e-5)
    assert teacher.description.startswith("convnet3 from weights.safetensors (sha256 ")
    with pytest.raises(BuildError, match="holds only weights.*--teacher-arch.*convnet3, convnet3_w32, resnet18_224, resnet18_32"):
        load_teacher(path)
    with pytest.raises(BuildError, match="does not match architecture resnet18_32: no 'fc.weight'"):
        load_teacher(path, arch="resnet18_32")
    state = net.state_dict()
    state["features.0.weight"] = state["features.0.weight"][:64]
    del state["features.4.bias"]
    state["extra"] = torch.zeros(1)
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken))
    expected = r"1 missing tensor\(s\) \(e\.g\. features\.4\.bias\), 1 unexpected .* 1 shape mismatch"
    with pytest.raises(BuildError, match=expected):
        load_teacher(broken, arch="convnet3")
    with pytest.raises(BuildError, match="unknown teacher architecture"):
        load_teacher(path, arch="alexnet")


@pytest.mark.parametrize("metadata, refused", [
    ({"hello.input_size": "abc"}, "hello.input_size must be an integer in"),
    ({"hello.input_size": "9" * 5000}, "hello.input_size must be an integer in"),
    ({"hello.input_size": "60000"}, "hello.input_size must be an integer in"),  # a dummy batch of 86 GB
    # a ResNet's weights say no size: 8,192 px made every teacher pass 34 GB of stem activations (tenth audit)
    ({"hello.input_size": "8192"}, r"hello.input_size must be an integer in \[1, 32\] \(resnet18_32's own or the data's image size\)"),
    ({"hello.mean": "5"}, "hello.mean must be a JSON list of 3 numbers"),
    ({"hello.mean": '["a", 1, 2]'}, "hello.mean must be a JSON list of 3 numbers"),
    ({"hello.mean": "[" * 100_000 + "]" * 100_000}, "hello.mean must be a JSON list of 3 numbers"),
    ({"hello.mean": "[0.5" + ", 0.5" * 200_000 + "]"}, "hello.mean must be a JSON list of 3 numbers"),
    ({"hello.std": "[NaN, 1, 1]"}, "hello.std must be a JSON list of 3 numbers"),
    ({"hello.std": "[1e-300, 1, 1]"}, r"hello.std must be a JSON list of 3 numbers in \[0.001, 1000\]"),
    ({"hello.arch": "x" * 1_000_000}, "unknown teacher architecture 'xxx"),
])
def test_a_safetensors_teachers_metadata_is_checked_before_use(tmp_path, metadata, refused):
    path = tmp_path / "teacher.safetensors"
    save_file(create_model("resnet18_32", 3).state_dict(), str(path), metadata={"hello.arch": "resnet18_32", **metadata})
    with pytest.raises(BuildError, match=refused) as error:
        load_teacher(path, num_classes=3)
    assert len(str(error.value)) < 300 + len(str(path))  # the value is quoted shortened, never whole


def test_a_resnet_teachers_recorded_size_is_taken_up_to_the_datas(tmp_path):
    path = tmp_path / "teacher.safetensors"
    save_file(create_model("resnet18_32", 3).state_dict(), str(path),
              metadata={"hello.arch": "resnet18_32", "hello.input_size": "64"})
    assert load_teacher(path, image_size=64).input_size == 64   # trained at the data's 64 px
    with pytest.raises(BuildError, match=r"must be an integer in \[1, 32\]"):
        load_teacher(path, image_size=16)


@pytest.mark.parametrize("end", ["plain", "zip64"])
def test_a_zip_teachers_entry_list_is_measured_before_it_is_parsed(tmp_path, end):
    """zipfile builds an object per central-directory entry (about 9x its bytes) whatever count the end
    record declares: a 51 MB list of a million entries took 5 s and 456 MB before the file was refused
    as no teacher at all (found by the tenth hostile-input audit)."""
    import struct
    from hello_build.teachers import MAX_ARCHIVE_DIRECTORY_BYTES

    record = struct.Struct("<IHHHHHHIIIHHHHHII")
    entries = [record.pack(0x02014B50, 20, 20, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0) + b"%08d" % i
               for i in range(MAX_ARCHIVE_DIRECTORY_BYTES // 54 + 1)]
    directory = b"".join(entries)
    path = tmp_path / "teacher.pt"
    if end == "plain":
        tail = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, len(directory), 0, 0)
    else:   # the sizes in a zip64 record, which zipfile reads whatever the plain record's fields say (review)
        zip64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 1, len(directory), 0)
        locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(directory), 1)
        tail = zip64 + locator + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, 0, 0, 0)
    path.write_bytes(directory + tail)
    with pytest.raises(BuildError, match=f"is a zip archive whose entry list is {len(directory):,} bytes .* at most "
                                         f"{MAX_ARCHIVE_DIRECTORY_BYTES:,}"):
        load_teacher(path, num_classes=3)   # refused from its end record: the list is never parsed


def test_a_zip_teacher_whose_entry_list_does_not_parse_is_one_line(tmp_path):
    """A valid end record before a spoiled entry list raised zipfile.BadZipFile: a traceback, exit 1
    (found by the twelfth hostile-input audit)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("m/code/x.py", b"x")
    data = bytearray(buffer.getvalue())
    at = data.rfind(b"PK\x01\x02")
    data[at:at + 2] = b"XX"
    path = tmp_path / "bad.pt2"
    path.write_bytes(bytes(data))
    with pytest.raises(BuildError, match=r"bad\.pt2 is not a readable zip archive: Bad magic number"):
        load_teacher(path, num_classes=3)


def test_a_safetensors_teachers_shapes_allocate_nothing_before_they_fit(tmp_path):
    state = create_model("resnet18_32", 3).state_dict()
    state["fc.weight"] = torch.empty(2**31 - 1, 0)  # no bytes, but a classifier of 4 TB if built as declared
    path = tmp_path / "teacher.safetensors"
    save_file(state, str(path), metadata={"hello.arch": "resnet18_32"})
    with pytest.raises(BuildError, match=r"does not match architecture resnet18_32: .*fc.weight \[2147483647, 0\] vs "):
        load_teacher(path, num_classes=3)
    convnet = tmp_path / "convnet.safetensors"  # real 32 px weights; the metadata claims 4096 px (a 17 GB classifier)
    save_file(create_model("convnet3", 3).state_dict(), str(convnet), metadata={"hello.arch": "convnet3",
                                                                               "hello.input_size": "4096"})
    with pytest.raises(BuildError, match=r"classifier.weight \[3, 2048\] vs \[3, 33554432\]"):
        load_teacher(convnet, num_classes=3)


class _Forwards:
    """Records every forward pass on real tensors, anywhere (a hook on all modules; a meta-device pass,
    which sizes a network without computing it, is not one)."""

    def __enter__(self):
        self.ran = []
        record = lambda module, inputs: self.ran.extend(  # noqa: E731
            type(module).__name__ for x in inputs if isinstance(x, torch.Tensor) and x.device.type != "meta")
        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _convnet_file(path, arch, classes, size, classifier_dtype):
    """A zoo ConvNet's weights at ``size`` px (its classifier, which implies the size, as ``classifier_dtype``)."""
    torch.manual_seed(0)
    state = create_model(arch, classes, image_size=size).state_dict()
    state["classifier.weight"] = state["classifier.weight"].to(classifier_dtype)
    save_file(state, str(path), metadata={"hello.arch": arch, "hello.input_size": str(size)})
    return path


def test_a_teacher_files_view_is_bounded_by_its_size_before_anything_runs(tmp_path):
    """A 6.4 MB convnet3_w32 file at 2,048 px asked 2.3 GB of activations a view: hello eval --regime teacher
    peaked at 5.1 GB, a 26 MB convnet3 one failed in torch's allocator (sixteenth audit). One view is sized on
    the meta device, before the weights are read and before the dummy batch, and held to the file's size."""
    from hello_build.teachers import MIN_TEACHER_VIEW_BYTES, TEACHER_VIEW_BYTES_PER_FILE_BYTE
    from hello_build.zoo import activation_bytes

    path = _convnet_file(tmp_path / "wide.safetensors", "convnet3_w32", 3, 1024, torch.float16)  # 3.2 MB
    size = path.stat().st_size
    assert TEACHER_VIEW_BYTES_PER_FILE_BYTE * size < MIN_TEACHER_VIEW_BYTES
    with _Forwards() as forwards, pytest.raises(BuildError) as error:
        load_teacher(path, num_classes=3)
    assert str(error.value) == (f"{path}: one 1024 px view through convnet3_w32 holds 572,522,508 bytes of activations "
                                f"(at most {MIN_TEACHER_VIEW_BYTES:,} for this {size:,}-byte teacher file)")
    assert forwards.ran == []   # neither the dummy batch nor anything else ran
    # what real teachers need stays far inside: ResNet-18 at 224 px (a 45 MB file), ConvNet-3 at 32 px
    for arch, side in [("resnet18_224", 224), ("convnet3", 32)]:
        with torch.device("meta"):
            view = activation_bytes(create_model(arch, 10, image_size=side), side)
        assert 8 * view < MIN_TEACHER_VIEW_BYTES, (arch, view)
    fine = _convnet_file(tmp_path / "fine.safetensors", "convnet3", 3, 32, torch.float32)
    assert load_teacher(fine, num_classes=3).view_bytes == activation_bytes(
        create_model("convnet3", 3).to("meta"), 32)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.bool, torch.int32])
def test_a_teacher_files_float_tensor_stored_as_integers_is_refused(tmp_path, dtype):
    """load_state_dict cast a U8 or BOOL classifier.weight silently (sixteenth audit): a float parameter or
    buffer must be stored as floats; an integer buffer (BatchNorm's num_batches_tracked) stays integer."""
    path = _convnet_file(tmp_path / "t.safetensors", "convnet3_w32", 3, 32, dtype)
    name = str(dtype).removeprefix("torch.")
    with _Forwards() as forwards, pytest.raises(BuildError) as error:
        load_teacher(path, num_classes=3)
    assert str(error.value) == (f"{path} does not match architecture convnet3_w32: 1 floating-point tensor(s) stored "
                                f"as another dtype (e.g. classifier.weight as {name})")
    assert forwards.ran == []
    half = _convnet_file(tmp_path / "half.safetensors", "convnet3_w32", 3, 32, torch.float16)
    assert load_teacher(half, num_classes=3).num_classes == 3   # a float of another width is cast as before
    resnet = tmp_path / "resnet.safetensors"
    state = create_model("resnet18_32", 3).state_dict()
    assert state["bn1.num_batches_tracked"].dtype == torch.int64
    save_file(state, str(resnet), metadata={"hello.arch": "resnet18_32"})
    assert load_teacher(resnet, num_classes=3).num_classes == 3


def test_a_zoo_teacher_labels_in_chunks_of_bounded_activations(monkeypatch, tmp_path):
    """Labelling was chunked by input pixels only: a legitimate ConvNet-3 at 512 px (573 MB of activations a
    view) labelled 16 views in one pass of 4.6 GB. A zoo teacher knows its bytes a view (sized on the meta
    device) and labels at most LABEL_CHUNK_ACTIVATION_BYTES of them at once; the logits are the same."""
    from hello_format import limits
    from hello_build.zoo import activation_bytes

    teacher = load_teacher(_convnet_file(tmp_path / "t.safetensors", "convnet3", 10, 16, torch.float32))
    view = activation_bytes(create_model("convnet3", 10, image_size=16).to("meta"), 16)
    assert teacher.view_bytes == view
    sizes = []
    teacher.net.register_forward_hook(lambda module, inputs, output: sizes.append(len(inputs[0])))
    images = torch.rand(10, 3, 8, 8)
    whole = teacher(images)
    assert sizes == [10]
    monkeypatch.setattr(limits, "LABEL_CHUNK_ACTIVATION_BYTES", 3 * view + 1)
    sizes.clear()
    assert torch.allclose(teacher(images), whole, atol=1e-5)
    assert sizes == [3, 3, 3, 1]
    monkeypatch.setattr(limits, "LABEL_CHUNK_ACTIVATION_BYTES", 1)   # one view at least
    sizes.clear()
    assert torch.allclose(teacher(images), whole, atol=1e-5) and sizes == [1] * 10


def test_saved_teacher_carries_its_arch_and_preprocessing(tmp_path):
    torch.manual_seed(1)
    teacher = Teacher(create_model("convnet3", 3), input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    path = save_teacher(teacher, tmp_path / "t.safetensors", "convnet3")
    loaded = load_teacher(path)
    assert loaded.preprocessing() == teacher.preprocessing()
    batch = torch.rand(2, 3, 32, 32)
    assert torch.allclose(loaded(batch), teacher.eval()(batch), atol=1e-5)


def test_the_same_teacher_saves_to_the_same_bytes_in_any_process(tmp_path):
    """Bundles record their teachers' sha256: a saved teacher must not depend on the writing process
    (safetensors' own writer orders the metadata differently from one process to the next)."""
    script = (
        "import sys, torch\n"
        "from hello_build.teachers import Teacher, save_teacher\n"
        "from hello_build.zoo import create_model\n"
        "torch.manual_seed(1)\n"
        "save_teacher(Teacher(create_model('convnet3', 3), input_size=32), sys.argv[1], 'convnet3')\n")
    digests = set()
    for run in range(3):
        path = tmp_path / f"t{run}.safetensors"
        subprocess.run([sys.executable, "-c", script, str(path)], check=True)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_module_factory(tmp_path, monkeypatch, images):
    (tmp_path / "my_teachers.py").write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(3)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())\n"
        "NOT_A_FACTORY = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    teacher = load_teacher("my_teachers:make", input_size=20)
    assert teacher.num_classes == 6
    assert teacher.description.startswith("factory my_teachers:make (my_teachers.py, sha256 ")
    assert torch.allclose(teacher(images), load_teacher("my_teachers:make", input_size=20)(images))
    with pytest.raises(BuildError, match="cannot import module 'no_such_module'.*PYTHONPATH"):
        load_teacher("no_such_module:make", input_size=20)
    (tmp_path / "broken_teachers.py").write_text("def make(:\n")   # found, but does not import: no PYTHONPATH hint
    with pytest.raises(BuildError, match=r"cannot import module 'broken_teachers' for teacher broken_teachers:make: ") as raised:
        load_teacher("broken_teachers:make", input_size=20)
    assert "PYTHONPATH" not in str(raised.value)
    with pytest.raises(BuildError, match="has no 'absent'"):
        load_teacher("my_teachers:absent", input_size=20)
    with pytest.raises(BuildError, match="not callable"):
        load_teacher("my_teachers:NOT_A_FACTORY", input_size=20)


def test_pickles_and_missing_files_are_refused(tmp_path):
    checkpoint = tmp_path / "model.pth"
    torch.save(tiny_net().state_dict(), str(checkpoint))
    with pytest.raises(BuildError, match="pickled PyTorch checkpoint.*convert it to safetensors"):
        load_teacher(checkpoint, arch="convnet3")
    legacy = tmp_path / "legacy.ckpt"
    legacy.write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(BuildError, match="pickled PyTorch checkpoint"):
        load_teacher(legacy)
    with pytest.raises(BuildError, match="teacher file .*absent.safetensors does not exist"):
        load_teacher(tmp_path / "absent.safetensors")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(BuildError, match="not a safetensors, TorchScript or torch.export file"):
        load_teacher(text)


def test_check_teacher_rejects_wrong_class_count():
    teacher = Teacher(tiny_net(4), input_size=16, description="tiny")
    check_teacher(teacher, 4)
    check_teacher(teacher, 4, input_size=32)
    with pytest.raises(BuildError, match="tiny outputs 4 classes but the data has 10"):
        check_teacher(teacher, 10)
    with pytest.raises(BuildError, match="outputs 4 classes but the data has 10"):
        check_teacher(TeacherSet([teacher]), 10)


class Constant(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def constant_teachers():
    return [Teacher(Constant([float(i == k) for k in range(3)]), input_size=4, description=f"t{i}") for i in range(3)]


def test_teacher_set_random_is_seeded_and_varies(images):
    def draws(seed):
        teachers = TeacherSet(constant_teachers(), combine="random", seed=seed)
        picks = []
        for _ in range(20):
            picks.append(int(teachers(images)[0].argmax()))
            assert picks[-1] == teachers.last_index
        return picks

    assert draws(0) == draws(0)
    assert len(set(draws(0))) == 3
    assert draws(0) != draws(1)
    assert "3 teachers, one drawn per batch (seed 0): t0; t1; t2" == TeacherSet(constant_teachers()).description


def test_teacher_set_mean_and_errors(images):
    mean = TeacherSet(constant_teachers(), combine="mean")
    assert mean(images)[0].tolist() == pytest.approx([1 / 3] * 3)
    with pytest.raises(BuildError, match="unknown teacher combination 'vote'"):
        TeacherSet(constant_teachers(), combine="vote")
    other = Teacher(Constant([0.0, 1.0]), input_size=4)
    with pytest.raises(BuildError, match="disagree on the class count"):
        TeacherSet(constant_teachers() + [other])
    # a build whose transfers never combine the set (its --teacher-combine recorded as null) says no rule
    unruled = TeacherSet(constant_teachers(), combine=None)
    assert unruled.description == "3 teachers: t0; t1; t2"
    assert unruled.mean_logits(images)[0].tolist() == pytest.approx([1 / 3] * 3)
    with pytest.raises(BuildError, match="without a combination rule"):
        unruled.logits(images)


def test_teacher_training_checkpoint_epochs_and_bounds():
    assert TeacherTraining(epochs=10, checkpoints=3).checkpoint_epochs() == [3, 7, 10]
    assert TeacherTraining(epochs=9, checkpoints=9).checkpoint_epochs() == list(range(1, 10))
    assert TeacherTraining(epochs=5, checkpoints=1).checkpoint_epochs() == [5]
    with pytest.raises(ValueError, match=r"^checkpoints must be from 1 to the epochs \(3\), one per epoch at most \(got 4\)"):
        TeacherTraining(epochs=3, checkpoints=4)
    for bad in ({"epochs": -3}, {"lr": float("inf")}, {"lr": 0.0}, {"batch_size": 1}, {"weight_decay": float("nan")},
                {"momentum": 1.0}, {"hflip": 2.0}, {"pad": -0.5}):
        (name, value), = bad.items()
        with pytest.raises(ValueError, match=rf"^{name} must be .* \(got {value}\)$"):   # one field, named as hello-build's --teacher-X
            TeacherTraining(**bad)


TRAINING = TeacherTraining(epochs=2, checkpoints=2, lr=0.01, batch_size=4)


def test_train_teacher_returns_distinct_trajectory_checkpoints(tmp_path):
    root = tmp_path / "data"
    for label, colour in enumerate([(220, 30, 30), (30, 30, 220)]):
        for i in range(6):
            shade = tuple(min(255, c + 4 * i) for c in colour)
            root.joinpath(f"c{label}").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (36, 36), shade).save(root / f"c{label}" / f"{i}.png")
    index = scan_image_folder(root)
    losses = []
    teachers = train_teacher(index, "convnet3", TRAINING, seed=0, input_size=16,
                             work_dir=tmp_path / "work", progress=lambda epoch, loss: losses.append((epoch, loss)))
    assert len(teachers) == 2 and [e for e, _ in losses] == [1, 2]
    assert all(t.input_size == 16 for t in teachers)
    assert all(not t.training and not any(p.requires_grad for p in t.parameters()) for t in teachers)
    first, last = (dict(t.net.state_dict()) for t in teachers)
    assert any(not torch.equal(first[k], last[k]) for k in first)
    assert "epoch 1/2" in teachers[0].description and "epoch 2/2" in teachers[1].description
    assert ("(SGD lr 0.01 cosine, momentum 0.9, weight decay 0.0005, batch 4, crop after padding 0.125 of the side, "
            "flip 0.5, fp32)") in teachers[0].description
    saved = sorted((tmp_path / "work").glob("*.safetensors"))
    assert [p.name for p in saved] == [f"teacher_convnet3_epoch000{e}.safetensors" for e in (1, 2)]
    batch = torch.rand(2, 3, 32, 32)
    reloaded = load_teacher(saved[1])
    assert reloaded.input_size == 16 and torch.allclose(reloaded(batch), teachers[1](batch), atol=1e-5)
    assert reloaded.view_bytes > 0 and [t.view_bytes for t in teachers] == [reloaded.view_bytes] * 2   # chunks bounded alike
    again = train_teacher(index, "convnet3", TRAINING, seed=0, input_size=16)
    assert torch.allclose(again[1](batch), teachers[1](batch), atol=1e-5)
    unflipped = train_teacher(index, "convnet3", dataclasses.replace(TRAINING, hflip=0.0), seed=0, input_size=16)
    assert not torch.allclose(unflipped[1](batch), teachers[1](batch), atol=1e-5)   # the option reaches training
    # bf16 autocast trains the same network in rounded arithmetic: close to fp32's, not equal, weights fp32
    bf16 = train_teacher(index, "convnet3", TRAINING, seed=0, input_size=16, precision="bf16")
    assert all(p.dtype == torch.float32 for p in bf16[1].parameters())
    assert not torch.equal(bf16[1](batch), teachers[1](batch))
    assert torch.allclose(bf16[1](batch), teachers[1](batch), atol=0.1)


def test_zoo_teacher_from_a_state_dict_and_convnet_sizes():
    torch.manual_seed(2)
    net = create_model("convnet3", 4, image_size=64).eval()
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 4)
    teacher = zoo_teacher("convnet3", 4, net.state_dict(), description="from work dir")
    assert teacher.input_size == 64 and teacher.description == "from work dir"  # read off the classifier
    batch = torch.rand(2, 3, 64, 64)
    assert torch.allclose(teacher(batch), Teacher(net, input_size=64)(batch), atol=1e-5)
    with pytest.raises(BuildError, match=r"outputs 4 classes but the data has 10"):
        zoo_teacher("convnet3", 10, net.state_dict())
    with pytest.raises(BuildError, match="divisible by 8"):
        create_model("convnet3", 4, image_size=30)


@pytest.mark.parametrize("name, size", [("convnet3_w32", 16), ("convnet3_w32", 48), ("convnet3", 24)])
def test_a_convnets_input_size_is_read_off_its_width_and_classifier(name, size):
    net = create_model(name, 3, image_size=size)
    assert zoo_teacher(name, 3, net.state_dict()).input_size == size
    other = "convnet3" if name == "convnet3_w32" else "convnet3_w32"
    with pytest.raises(BuildError, match=f"does not match architecture {other}"):
        zoo_teacher(other, 3, net.state_dict())


def test_load_teacher_checks_classes_and_uses_the_data_size_as_fallback(tmp_path, monkeypatch):
    path = tmp_path / "teacher.pt"
    torch.jit.save(torch.jit.script(tiny_net(4)), str(path))
    assert load_teacher(path, image_size=32, trust_code=True).input_size == 32
    assert load_teacher(path, input_size=24, image_size=32, trust_code=True).input_size == 24
    with pytest.raises(BuildError, match="outputs 4 classes but the data has 3"):
        load_teacher(path, image_size=32, num_classes=3, trust_code=True)
    weights = tmp_path / "resnet.safetensors"
    save_file(create_model("resnet18_224", 3).state_dict(), str(weights))
    assert load_teacher(weights, arch="resnet18_224", image_size=32, num_classes=3).input_size == 224
    (tmp_path / "sized.py").write_text(
        "import torch\n"
        "def make(num_classes):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_teacher("sized:make", image_size=8, num_classes=5).num_classes == 5


def test_teacher_set_logits_with_an_outside_generator(images):
    teachers = TeacherSet(constant_teachers(), combine="random", seed=0)
    picks = [int(teachers.logits(images, generator=torch.Generator().manual_seed(9))[0].argmax()) for _ in range(5)]
    assert len(set(picks)) == 1  # the same fresh generator draws the same teacher every time
    assert teachers.mean_logits(images)[0].tolist() == pytest.approx([1 / 3] * 3)


def test_the_teachers_augmentation_is_what_its_options_say():
    """--teacher-hflip and --teacher-pad: a flip of probability 1 mirrors every image, 0 none; no padding,
    no crop; padding by a quarter crops within a quarter of the side."""
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    plain = images.float() / 255.0
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(_crop_flip(images, TeacherTraining(hflip=0.0, pad=0.0), generator), plain)
    assert torch.equal(_crop_flip(images, TeacherTraining(hflip=1.0, pad=0.0), generator), plain.flip(-1))
    shifted = _crop_flip(images, TeacherTraining(hflip=0.0, pad=0.25), generator)
    moves = []
    for out, image in zip(shifted, plain):   # the image, moved by at most 4 px each way, zeros around it
        padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
        moves += [max(abs(top - 4), abs(left - 4)) for top in range(9) for left in range(9)
                  if torch.equal(out, padded[:, top:top + 16, left:left + 16])]
    assert len(moves) == len(images) and max(moves) > 2   # a quarter of 16 px: moves of 3 and 4 px too
    with pytest.raises(ValueError, match=r"^hflip must be in \[0, 1\] \(got 1\.5\)"):
        TeacherTraining(hflip=1.5)


def test_the_seed_draws_a_trained_teachers_start(tmp_path):
    """train_teacher's seed is its network's initialisation too, not only its data order and augmentation:
    at a learning rate too small to move the weights, two seeds still give two teachers."""
    root = tmp_path / "data"
    for label, colour in enumerate([(220, 30, 30), (30, 30, 220)]):
        (root / f"c{label}").mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), colour).save(root / f"c{label}" / f"{i}.png")
    still = dataclasses.replace(TRAINING, epochs=1, checkpoints=1, lr=1e-12)
    first, second = (train_teacher(scan_image_folder(root), "convnet3", still, seed=seed, input_size=16)[0] for seed in (0, 1))
    batch = torch.rand(2, 3, 16, 16)
    assert not torch.allclose(first(batch), second(batch), atol=1e-4)


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="named pipes")
def test_a_teacher_that_is_a_named_pipe_is_refused_not_waited_on(tmp_path):
    """A named pipe called model.safetensors (a tar archive can hold one) was opened to read its first
    bytes: hello-build --teacher and hello eval --teacher waited on it for ever (timed out after 20 s)."""
    import os
    import threading

    pipe = tmp_path / "model.safetensors"
    os.mkfifo(pipe)
    outcome = []
    worker = threading.Thread(daemon=True, target=lambda: outcome.append(
        _refusal(lambda: load_teacher(pipe, num_classes=3, image_size=32))))
    worker.start()
    worker.join(10)
    if worker.is_alive():   # release the blocked open, so the thread ends
        with open(pipe, "wb"):
            pass
        worker.join(10)
    assert outcome and outcome[0] is not None and "is not a regular file" in str(outcome[0])


def _refusal(call):
    try:
        call()
    except BuildError as exc:
        return exc
    return None
