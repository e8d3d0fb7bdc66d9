"""Side by side: forward+backward of ConvNet-3 and the demo's hello-tiny-rn image tower on a batch of 32 at 32 px,
contiguous against channels_last, 6 interleaved rounds of 5 steps (python bench/results/channels-last.py)."""
import time, torch, statistics
import hello_format, open_clip
import hello_format.base
from hello_build.zoo import create_model
torch.manual_seed(0)
x = torch.randn(32, 3, 32, 32)
nets = {"convnet3": create_model("convnet3", 10, 32), "tiny-rn": open_clip.create_model("hello-tiny-rn").visual}
res = {}
for r in range(6):
    for name, net in nets.items():
        for cl in (False, True):
            fmt = torch.channels_last if cl else torch.contiguous_format
            net.to(memory_format=fmt); xx = x.contiguous(memory_format=fmt)
            net(xx).float().sum().backward()
            t = time.perf_counter()
            for _ in range(5):
                net(xx).float().sum().backward()
            res.setdefault((name, cl), []).append((time.perf_counter() - t) / 5)
for (name, cl), v in res.items():
    print(name, "channels_last" if cl else "contiguous", f"median {statistics.median(v)*1e3:.1f} ms", [f"{a*1e3:.0f}" for a in v])
