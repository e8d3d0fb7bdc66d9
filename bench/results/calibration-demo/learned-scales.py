"""Experiment (a record, not a tool): calibration with learned per-group scales (LSQ-style), evaluated as
a reader would dequantise. ``python learned-scales.py BUNDLE steps=300,loss=kl,slr=0.003 ...`` (slr: the
log-scale's lr, 0 keeps the scales fixed); results in README.md beside it."""
import sys, time, math, copy
from pathlib import Path
import torch, torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # bench/, for storage.py
from hello_format.bundle import Bundle
from hello_format.projector import Projector
from hello_format.recipe import Recipe
from hello_format.quantize import grouped
from hello_format.augment import augment_batch
from hello_format.calibration import _Selection, CalibrationConfig, FIT_SEED
from storage import student_views
torch.set_num_threads(1)

class LSQ(nn.Module):
    def __init__(self, weight, G, qmax=7):
        super().__init__()
        self.G, self.qmax, self.n, self.shape = G, qmax, weight.numel(), weight.shape
        g = grouped(weight.detach().float().reshape(-1), G)
        s = (g.abs().amax(1) / qmax).clamp_min(1e-8)
        self.log_s = nn.Parameter(s.log())
    def scales(self):
        s = self.log_s.exp()
        return s + (s.half().float() - s).detach()   # what fp16 storage keeps
    def forward(self, w):
        s = self.scales()
        flat = w.reshape(-1)
        pad = torch.zeros(-(-self.n // self.G) * self.G - self.n, device=w.device)
        gw = torch.cat([flat, pad]).reshape(-1, self.G)
        v = (gw / s[:, None]).clamp(-self.qmax, self.qmax)
        q = v + (torch.round(v) - v).detach()
        return (q * s[:, None]).reshape(-1)[: self.n].reshape(self.shape)

def run(src, steps, lr, slr, loss_kind, G=64, sel_views=1024):
    with Bundle.open(src) as b:
        images, recipe = b.images(), Recipe.from_manifest(b.manifest["recipe"])
        projector = Projector.from_bundle(b, merge=False)
        ref_full = Projector.from_bundle(b)
    augment = recipe.augment
    reference = copy.deepcopy(projector).eval()
    names = [n for n, _ in projector.named_parameters() if "lora_" in n]
    groups, lsqs = [], []
    for name in names:
        mn, _, attr = name.rpartition(".")
        module = projector.get_submodule(mn)
        w = getattr(module, attr)
        g = grouped(w.detach().float().reshape(-1), G)
        mean_step = max(float(g.abs().amax(1).mean()) / 7, 1e-12)
        lsq = LSQ(w, G)
        parametrize.register_parametrization(module, attr, lsq)
        latent = getattr(module.parametrizations, attr).original
        latent.requires_grad_(True)
        groups.append({"params": [latent], "lr": lr * mean_step})
        if slr: groups.append({"params": [lsq.log_s], "lr": slr})
        else: lsq.log_s.requires_grad_(False)
        lsqs.append((mn, attr, lsq))
    projector.eval()
    cfg = CalibrationConfig(steps=steps, selection_views=sel_views)
    sel = _Selection(images, augment, cfg, reference, torch.device("cpu"))
    before = kept = sel.agreement(projector)
    snap = lambda: {k: v.detach().clone() for k, v in projector.named_parameters() if v.requires_grad}
    best = snap()
    opt = torch.optim.Adam(groups)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    gen = torch.Generator().manual_seed(FIT_SEED)
    for step in range(1, steps + 1):
        pick = torch.randint(0, len(images), (128,), generator=gen)
        views = augment_batch(images[pick], augment, gen).images
        with torch.no_grad(): t = reference(views).float()
        p = projector(views).float()
        loss = F.kl_div(F.log_softmax(p, 1), F.softmax(t, 1), reduction="batchmean") if loss_kind == "kl" else F.mse_loss(p, t)
        opt.zero_grad(); loss.backward(); opt.step(); decay.step()
        if step % 50 == 0 or step == steps:
            a = sel.agreement(projector)
            if a > kept: kept, best = a, snap()
    with torch.no_grad():
        params = dict(projector.named_parameters())
        for k, v in best.items(): params[k].copy_(v)
    # dequantised values exactly as a reader: q * fp16(s)
    with torch.no_grad():
        deq = {}
        for mn, attr, lsq in lsqs:
            module = projector.get_submodule(mn)
            deq[(mn, attr)] = getattr(module, attr).detach().clone()
            s16 = lsq.log_s.exp().half().float()
            assert torch.isfinite(s16).all()
        for mn, attr, lsq in lsqs:
            parametrize.remove_parametrizations(projector.get_submodule(mn), attr, leave_parametrized=False)
            getattr(projector.get_submodule(mn), attr).copy_(deq[(mn, attr)])
    return projector, ref_full, images, recipe, before, kept

src = Path(sys.argv[1])
for spec in sys.argv[2:]:
    kw = dict(x.split("=") for x in spec.split(","))
    t0 = time.time()
    proj, ref, images, recipe, before, kept = run(src, int(kw.get("steps", 300)), float(kw.get("lr", 0.01)), float(kw.get("slr", 0)), kw.get("loss", "mse"), int(kw.get("group", 64)))
    mixed, unmixed = student_views(images, recipe, 2000)
    with torch.no_grad():
        a1 = sum(int((proj(v).argmax(1) == ref.label(v).argmax(1)).sum()) for v in mixed) / 20
        a2 = sum(int((proj(v).argmax(1) == ref.label(v).argmax(1)).sum()) for v in unmixed) / 20
    print(f"{spec:40s} sel {before:.4f} -> {kept:.4f} | reported CutMix {a1:.2f} plain {a2:.2f} ({time.time()-t0:.0f} s)", flush=True)
