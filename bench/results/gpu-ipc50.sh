# A lent H200's question (the `device` tool), as one script:
#   bash bench/results/gpu-ipc50.sh SECONDS            # the first call
#   bash bench/results/gpu-ipc50.sh SECONDS second     # a second call on the same warm machine: IPC 50 only
# IPC 50 at the bench's GPU defaults, which no GPU has run (the recorded H200 grid, results/gpu-h200/,
# stopped inside IPC 10): the stand-in hello-rn-w32 pretrained 1,000 steps, the ConvNet-3 teacher 15
# epochs, 10 real-transfer epochs, 2,000 view steps at real fraction 0.5, 300 student epochs; ConvNet-3
# students, 5 seeds, projector / online teacher / hard labels. The view transfer at lr 0.003, the value
# every IPC 50 build uses since lr 0.01 diverged there (chosen on held-out agreement, bench/README.md).
# The builds decode with 8 worker processes: the first GPU run of the fix in b3f05c5. Then, as long as
# SECONDS allows, IPC 10 from the same cache (foundation, teacher and real transfer shared).
# Wheels travel in .whl/, the archives in .data/cifar10-jpeg/; logs, tables and bundles come back in $OUT.
set -u
started=$SECONDS
source bench/results/device-setup.sh

cache=bench/results/cache-gpu
grid=(--data .data/cifar10-jpeg --cache $cache --device cuda --jobs 8 --num-workers 8 --students convnet3
      --seeds 0 1 2 3 4 --regimes projector teacher hard --view-transfer-lr 0.003)
left() { echo $(( $1 - (SECONDS - started) - 35 )); }

run() {  # run IPC: the grid for one IPC, stopped at the deadline; a stopped grid reports what ran
    local ipc=$1
    echo "== IPC $ipc: $(left $deadline) s left"
    timeout -s INT $(left $deadline) python3 bench/cifar10.py "${grid[@]}" --ipc $ipc --out $OUT/ipc$ipc 2>&1 \
        | tr '\r' '\n' | grep -v 'it/s' > $OUT/ipc$ipc.log
    tail -3 $OUT/ipc$ipc.log
    if [ ! -f $OUT/ipc$ipc/table.md ] && ls $cache/bundles/cifar10-ipc$ipc-*.json >/dev/null 2>&1; then
        timeout 25 python3 bench/cifar10.py "${grid[@]}" --ipc $ipc --report-only --out $OUT/ipc$ipc >> $OUT/ipc$ipc.log 2>&1
    fi
}

# The recorded first call (560 s) built the IPC 50 bundle and ran its hard and teacher students; the
# second (ran inline as this script's `second`, 200 s) ran the projector's from the same cache.
deadline=$1
run 50
[ "${2:-}" != second ] && [ $(left $deadline) -gt 150 ] && run 10
grep -h "foundation: \|teacher: test\|build: \|stage\|seconds" $OUT/*.log | head -40
for ipc in 50 10; do echo "== IPC $ipc"; cat $OUT/ipc$ipc/table.md 2>/dev/null | head -30; done
# at most 8 files come back: one archive of the grids and the bundles' json, and the IPC 50 bundle
tar czf $OUT/grids.tar.gz -C $OUT $(cd $OUT && ls -d ipc*/) -C $PWD $(find $cache/bundles -name '*.json') 2>/dev/null \
    && rm -rf $OUT/ipc*/
cp $cache/bundles/cifar10-ipc50-*.hello $OUT/ 2>/dev/null
ls -la $OUT
