"""A record of runs (not a tool): int4 calibration under objectives and settings other than the defaults.

    python bench/results/calibration-objectives.py [--bundle B] [VARIANT ...]

A VARIANT is an objective (mse kl1 kl0.5 mse+ce1 mse+margin), optionally with calibration settings:
``kl1,lr=0.003,steps=1000,group=48``. Each replaces ``F.mse_loss`` inside ``hello_format.calibration``
(its ``mse`` objective) for one ``hello requantize`` of the bundle to int4 (by default the CIFAR bench's
4000-step IPC 10 bundle, group 64, the default config: calibration-objectives.log; the demo's bundle:
calibration-demo/README.md). The choice is made on calibration's own selection agreement, and the
agreement with the fp16 projector on bench/storage.py's 2,000 student views (seed 0, with and without
CutMix) is reported only. ``kl1`` is what ``--calibration-objective kl`` now does without the patch.
"""
import shutil, sys, tempfile, types
from pathlib import Path
import torch, torch.nn.functional as F
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hello_format.calibration as cal
from hello_format.bundle import Bundle
from hello_format.calibration import CalibrationConfig
from hello_format.projector import Projector
from hello_format.recipe import Recipe
from hello_format.requantize import requantize
from storage import student_views

SRC = Path(__file__).resolve().parent / "cache/bundles/cifar10-ipc10-5c32904e351256aa.hello"

def kl(T):
    def loss(pred, target):
        return F.kl_div(F.log_softmax(pred / T, 1), F.softmax(target / T, 1), reduction="batchmean") * T * T
    return loss

def mse_margin(lam, m):
    def loss(pred, target):
        t = target.argmax(1)
        pt = pred.gather(1, t[:, None])[:, 0]
        other = pred.scatter(1, t[:, None], float("-inf")).amax(1)
        return F.mse_loss(pred, target) + lam * F.relu(m - (pt - other)).mean()
    return loss

def mse_ce(lam):
    def loss(pred, target):
        return F.mse_loss(pred, target) + lam * F.cross_entropy(pred, target.argmax(1))
    return loss

VARIANTS = {"mse": F.mse_loss, "kl1": kl(1.0), "kl0.5": kl(0.5), "mse+ce1": mse_ce(1.0), "mse+margin": mse_margin(1.0, 0.5)}
args = sys.argv[1:]
if args[:1] == ["--bundle"]:
    SRC, args = Path(args[1]), args[2:]
chosen = args or list(VARIANTS)
with tempfile.TemporaryDirectory() as tmp:
    src = Path(tmp) / SRC.name
    shutil.copyfile(SRC, src)
    with Bundle.open(src) as b:
        images, recipe = b.images(), Recipe.from_manifest(b.manifest["recipe"])
        ref = Projector.from_bundle(b)
    mixed, unmixed = student_views(images, recipe, 2000)
    with torch.no_grad():
        e1 = [ref.label(v).argmax(1) for v in mixed]; e2 = [ref.label(v).argmax(1) for v in unmixed]
    for variant in chosen:
        name, *settings = variant.split(",")
        settings = {key: float(value) if key == "lr" else int(value) for key, value in (s.split("=") for s in settings)}
        group = settings.pop("group", 64)
        cal.F = types.SimpleNamespace(mse_loss=VARIANTS[name])   # the patched F.mse_loss is the objective
        done = requantize(src, Path(tmp) / "c.hello", "int4", group, overwrite=True,
                          calibration=CalibrationConfig(objective="mse", **settings))
        with Bundle.open(done.path) as o:
            p = Projector.from_bundle(o)
        with torch.no_grad():
            a1 = sum(int((p.label(v).argmax(1) == e).sum()) for v, e in zip(mixed, e1)) / 20
            a2 = sum(int((p.label(v).argmax(1) == e).sum()) for v, e in zip(unmixed, e2)) / 20
        c = done.calibration   # None with steps=0: rounded to nearest
        chose = f"selection {c['agreement_rounded']:.4f} -> {c['agreement']:.4f}" if c else "rounded"
        print(f"{variant:12s} {chose} | reported: CutMix {a1:.2f} %  plain {a2:.2f} %", flush=True)
