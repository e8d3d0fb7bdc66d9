"""The label regimes ``hello eval`` trains a student under: where each augmented view's labels come from
(the same student, images and augmentation for all)."""

REGIMES = {
    "projector": "the bundle's label generator, for each view on the device (HelloDataset)",
    "hard": "the class labels alone",
    "teacher": "an online teacher (--teacher) on each view",
    "stored": "the teacher's labels for every view written to disk once and read back (FKD-style)",
    "random-real": "the projector on a random real subset (--real) of the bundle's size instead of its images",
}
DEFAULT_REGIME = "projector"
PROJECTOR_REGIMES = ("projector", "random-real")   # labelled by the bundle's projector
TEACHER_REGIMES = ("teacher", "stored")            # labelled by the original teacher (--teacher)
