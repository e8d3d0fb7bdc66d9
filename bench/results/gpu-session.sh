# The device checks of a session lent one H200 (the `device` tool), as one script:
#   bash bench/results/gpu-session.sh SECONDS [checks]
# Wheels the device image lacks travel in .whl/ (open_clip_torch, ftfy, wcwidth, peft, jsonschema and
# its three needs), the CIFAR-10 archives in .data/cifar10-jpeg/. With "checks": bench/gpu_check.py, the
# suite's gpu-marked tests and bench/memory_format.py's RN50 bf16 transfer step first. Then the CIFAR-10
# grid at the bench's own defaults (IPC 10 and 50, ConvNet-3 and ResNet-18, 3 seeds, 5 regimes;
# foundation, teacher, builds and students on the GPU),
# stopped SECONDS after the script started; its cache (bench/results/cache-gpu) survives on a warm
# machine, so a second call resumes it. Logs and the grid's table come back in $OUT.
# The recorded run (results/gpu-h200/) decoded in the build's own process: --num-workers 8 came after it.
set -u
started=$SECONDS
source bench/results/device-setup.sh

if [ "${2:-}" = checks ]; then
    timeout 150 python3 bench/gpu_check.py 2>&1 | tee $OUT/gpu_check.log
    timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu -o addopts= tests 2>&1 | tail -25 | tee $OUT/pytest_gpu.log
    # hello-build --channels-last (the default) against --no-channels-last: an RN50 transfer step in bf16
    timeout 120 python3 bench/memory_format.py --device cuda --precision bf16 --bases RN50 --batch 128 --steps 20 \
        2>&1 | tee $OUT/memory_format.log
fi

cache=bench/results/cache-gpu
grid=(--data .data/cifar10-jpeg --cache $cache --device cuda --jobs 8 --num-workers 8)
left=$(( $1 - (SECONDS - started) - 45 ))
echo "grid: $left s left"
timeout -s INT $left python3 bench/cifar10.py "${grid[@]}" --out $OUT/grid 2>&1 | tr '\r' '\n' | grep -v 'it/s' > $OUT/grid.log
tail -5 $OUT/grid.log
# a stopped grid writes no table: report the runs cached so far, for the IPCs whose bundle exists
ipcs=$(ls $cache/bundles/ 2>/dev/null | sed -n 's/^cifar10-ipc\([0-9]*\)-.*\.json$/\1/p' | sort -n | tr '\n' ' ')
if [ ! -f $OUT/grid/table.md ] && [ -n "$ipcs" ]; then
    timeout 40 python3 bench/cifar10.py "${grid[@]}" --ipc $ipcs --report-only --out $OUT/grid >> $OUT/grid.log 2>&1
fi
tar czf $OUT/cache-json.tar.gz $(find $cache -name '*.json' -not -path '*/cifar10/*') 2>/dev/null
ls -la $OUT $OUT/grid 2>/dev/null
cat $OUT/grid/table.md 2>/dev/null | head -60
