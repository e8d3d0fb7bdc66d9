# Which teacher should rank the candidate images (hello-build --init-teacher)? Screened on split 2's cached
# original half, 15-epoch trajectory (epochs 5, 10, 15) and IPC 10 bundle (its recipe), never on test:
# the builder's rule (most confident whole images, IPC 10) ranked by the mean of the three checkpoints'
# logits (the default) or by the final teacher alone (RDED's observer); ConvNet-3 students, 200 epochs,
# under the final teacher's online labels, seeds 0 1 2, scored on the builder's hold-out and the
# foundation half. Written before the run: the default changes only if "last" leads on both sets by more
# than the larger of the two rules' seed spreads, and then only with new IPC pairs (the goals' pairs ran
# at "mean"); otherwise the option stays, documented, at "mean".
set -eu
cache=bench/results/cache
out=bench/results/init-teacher
mkdir -p $out
for judge in mean last; do
  nice -n 10 python bench/image_selection.py --bundle $cache/bundles/cifar10-ipc10-9533a758f917d9d4.hello \
    --teachers $cache/teacher/8db7174a4c0e1592/teacher_convnet3_epoch00{05,10,15}.safetensors \
    --original $cache/cifar10/split-2/original --rules confident --seeds 0 1 2 --labels teacher \
    --init-teacher $judge --out $out 2>&1 | tee $out/$judge.log
done
