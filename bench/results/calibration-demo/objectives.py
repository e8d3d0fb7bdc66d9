import shutil, sys, tempfile, types, time, json
from pathlib import Path
import torch, torch.nn.functional as F
sys.path.insert(0, "/work/main/bench")
import hello_format.calibration as cal
from hello_format.bundle import Bundle
from hello_format.calibration import CalibrationConfig
from hello_format.projector import Projector
from hello_format.recipe import Recipe
from hello_format.requantize import requantize
from storage import student_views
torch.set_num_threads(1)
SRC = Path(sys.argv[1]); variants = sys.argv[2:]
def kl(pred, target):
    return F.kl_div(F.log_softmax(pred, 1), F.softmax(target, 1), reduction="batchmean")
with tempfile.TemporaryDirectory() as tmp:
    src = Path(tmp) / SRC.name
    shutil.copyfile(SRC, src)
    with Bundle.open(src) as b:
        images, recipe = b.images(), Recipe.from_manifest(b.manifest["recipe"])
        ref = Projector.from_bundle(b)
    mixed, unmixed = student_views(images, recipe, 2000)
    with torch.no_grad():
        e1 = [ref.label(v).argmax(1) for v in mixed]; e2 = [ref.label(v).argmax(1) for v in unmixed]
    for v in variants:
        kw = dict(x.split("=") for x in v.split(",") if "=" in x)
        loss = kw.pop("loss", "mse")
        cal.F = types.SimpleNamespace(mse_loss=kl if loss == "kl" else F.mse_loss)
        group = int(kw.pop("group", 64))
        cfg = CalibrationConfig(**{k: (float(x) if k == "lr" else int(x)) for k, x in kw.items()})
        t = time.time()
        done = requantize(src, Path(tmp) / "c.hello", "int4", group, overwrite=True, calibration=cfg if cfg.steps else None)
        with Bundle.open(done.path) as o:
            p = Projector.from_bundle(o)
        with torch.no_grad():
            a1 = sum(int((p.label(x).argmax(1) == e).sum()) for x, e in zip(mixed, e1)) / 20
            a2 = sum(int((p.label(x).argmax(1) == e).sum()) for x, e in zip(unmixed, e2)) / 20
        c = done.calibration or {}
        print(f"{v:40s} loss={loss} sel {c.get('agreement_rounded', float('nan')):.4f} -> {c.get('agreement', float('nan')):.4f} | reported CutMix {a1:.2f} % plain {a2:.2f} %  ({time.time()-t:.0f} s)", flush=True)
