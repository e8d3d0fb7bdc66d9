import json, sys, statistics as st
from collections import defaultdict
rows=[json.loads(l) for l in open(sys.argv[1])]
d=defaultdict(dict)
for r in rows: d[(r['loop'],r['family'])].setdefault(r['labels'],{})[r['seed']]=r['top1']*100
print("| loop | family | hard mean±std | HelloDataset mean±std | diff (paired per seed) |")
print("|---|---|---|---|---|")
for (loop,fam),v in sorted(d.items()):
    h=v['hard']; s=v['hello']; seeds=sorted(h)
    diffs=[s[k]-h[k] for k in seeds]
    f=lambda x: f"{st.mean(x):.1f} ± {st.stdev(x):.1f}"
    print(f"| {loop} | {fam} | {f(list(h.values()))} | {f(list(s.values()))} | {st.mean(diffs):+.1f} ({', '.join(f'{x:+.1f}' for x in diffs)}) |")
