"""Independent students and loops on HelloDataset (not the project's zoo / hello eval / train_student.py).

One run: python students.py --family F --loop L --labels {hello,hard} --seed S [--eval test|dev]
Prints one JSON line; appends it to --out if given.
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import hello_format  # first: before open_clip (imported by hello_build.demo)
from hello_format import HelloDataset
from hello_build.demo import DIGIT_NAMES, digits_split

BUNDLE = os.environ.get("HELLO_DEMO_BUNDLE", "demo.hello")   # the demo bundle the students train on
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


# ---------------------------------------------------------------- families
class MLP(nn.Module):
    def __init__(self, k=10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 512), nn.GELU(), nn.Dropout(0.1),
                                 nn.Linear(512, 256), nn.GELU(), nn.Linear(256, k))

    def forward(self, x):
        return self.net(x)


def dw_block(cin, cout, stride):
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6())


class MobileNetish(nn.Module):
    def __init__(self, k=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.blocks = nn.Sequential(dw_block(16, 32, 1), dw_block(32, 64, 2), dw_block(64, 64, 1),
                                    dw_block(64, 128, 2), dw_block(128, 128, 1))
        self.head = nn.Linear(128, k)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class TinyViT(nn.Module):
    def __init__(self, k=10, patch=4, dim=64, depth=4, heads=4):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        n = (32 // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, k)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1) + self.pos
        return self.head(self.norm(self.encoder(t))[:, 0])


class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); self.b2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.short(x))


class ResNet8(nn.Module):
    def __init__(self, k=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layers = nn.Sequential(Basic(16, 16, 1), Basic(16, 32, 2), Basic(32, 64, 2))
        self.head = nn.Linear(64, k)

    def forward(self, x):
        return self.head(self.layers(self.stem(x)).mean((2, 3)))


FAMILIES = {"mlp": MLP, "mobilenet": MobileNetish, "vit": TinyViT, "resnet": ResNet8}


# ---------------------------------------------------------------- loops
# (a) sgdkl: SGD nesterov momentum 0.9, lr 0.05, wd 5e-4, cosine to 0; soft: Hinton KD, KL at T=4 times T^2
#     hard: cross-entropy on the (CutMix-mixed) one-hot labels, same optimizer/schedule
# (b) adamce: AdamW lr 1e-3, wd 0.05, 5% linear warm-up then cosine; soft: F.cross_entropy(logits, softmax(soft))
#     hard: F.cross_entropy(logits, mixed one-hot)
T_KD = 4.0
KD_RECIPE_T = None


def make_opt(loop, model, steps):
    if loop == "sgdkl":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
        warm = max(1, steps // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (steps - warm))))
    return opt, sched


def loss_fn(loop, labels, logits, soft, hard):
    if labels == "hard":
        return F.cross_entropy(logits, hard)            # probabilities target (mixed one-hot)
    if KD_RECIPE_T:   # probe: the library's kl_loss at the bundle recipe's temperature (no T^2)
        return hello_format.kl_loss(logits, soft, KD_RECIPE_T)
    if loop == "sgdkl":
        return F.kl_div(F.log_softmax(logits / T_KD, 1), F.log_softmax(soft / T_KD, 1),
                        reduction="batchmean", log_target=True) * T_KD ** 2
    return F.cross_entropy(logits, soft.softmax(1))


# ---------------------------------------------------------------- data
def real_digits(part, class_names):
    """The demo's split (hello_build.demo.digits_split(0)), labels renumbered to the bundle's class order."""
    images, labels = digits_split(0)[part]
    to_bundle = torch.tensor([class_names.index(DIGIT_NAMES[d]) for d in range(10)])
    x = (images.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return x, to_bundle[labels]


@torch.no_grad()
def top1(model, x, y):
    model.eval()
    return float((torch.cat([model(x[i:i + 256]) for i in range(0, len(x), 256)]).argmax(1) == y).float().mean())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--family", choices=FAMILIES, required=True)
    p.add_argument("--loop", choices=["sgdkl", "adamce"], required=True)
    p.add_argument("--labels", choices=["hello", "hard"], required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=600)
    p.add_argument("--eval", choices=["test", "dev"], default="test",
                   help="test: the demo's 397 unseen digits; dev: its 700 'original' digits (never the students')")
    p.add_argument("--out", default=None)
    p.add_argument("--clip", type=float, default=None, help="grad-norm clip (default: 1.0 for sgdkl, none for adamce)")
    p.add_argument("--recipe-kl", action="store_true", help="probe: soft loss = hello_format.kl_loss at ds.recipe.temperature")
    a = p.parse_args()

    if a.clip is None:
        a.clip = 1.0 if a.loop == "sgdkl" else 0.0
    torch.set_num_threads(1)
    started = time.time()
    ds = HelloDataset(BUNDLE, device="cpu", seed=a.seed, normalize=(MEAN, STD), soft_labels=a.labels == "hello")
    if a.recipe_kl:
        global KD_RECIPE_T
        KD_RECIPE_T = ds.recipe.temperature
    loader = DataLoader(ds, batch_size=10, shuffle=True, generator=torch.Generator().manual_seed(a.seed))
    torch.manual_seed(a.seed)
    model = FAMILIES[a.family](len(ds.class_names))
    steps = a.epochs * len(loader)
    opt, sched = make_opt(a.loop, model, steps)
    for epoch in range(a.epochs):
        ds.set_epoch(epoch)
        model.train()
        for images, soft, hard in loader:
            loss = loss_fn(a.loop, a.labels, model(images), soft, hard)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if a.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
            opt.step()
            sched.step()
    x, y = real_digits("test" if a.eval == "test" else "original", ds.class_names)
    result = dict(family=a.family, loop=a.loop, labels=a.labels + ("-recipeKL" if a.recipe_kl else ""), seed=a.seed, epochs=a.epochs, eval=a.eval, clip=a.clip,
                  n=len(y), top1=top1(model, x, y), final_loss=round(loss.item(), 4),
                  params=sum(q.numel() for q in model.parameters()), seconds=round(time.time() - started, 1))
    line = json.dumps(result)
    print(line)
    if a.out:
        with open(a.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
