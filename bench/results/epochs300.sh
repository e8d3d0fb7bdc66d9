# The default IPC 10 CPU bundle (prior mix, real fraction 0.25) with ConvNet-3 students at the bench's own
# default of 300 epochs (the CPU grids used 200), projector against the online teacher, 5 seeds; the
# bundle is unchanged (its key holds the plain --student-epochs 200). Test reported only.
python bench/cifar10.py --ipc 10 --seeds 0 1 2 3 4 --students convnet3 --regimes projector teacher \
    --student-epochs 200 convnet3=300 --teacher-epochs 6 --transfer-epochs 3 --view-transfer-real-fraction 0.25 \
    --jobs 2 --out bench/results/cifar10-epochs300
