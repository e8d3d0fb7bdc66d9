"""The demo with its ConvNet-3 (teacher and students) narrowed to WIDTH channels, before the zoo had such
an entry: python bench/results/demo-width/experiment.py WIDTH SEED (fp32)."""
import sys, time
import hello_format  # noqa: F401
import hello_build.zoo as zoo
from hello_build.zoo import Architecture, ConvNet

width, seed = int(sys.argv[1]), int(sys.argv[2])
zoo.ZOO["convnet3"] = Architecture("convnet3", 32, lambda c, s: ConvNet(c, image_size=s, width=width), "classifier.weight")
zoo.infer_input_size = lambda name, state: 32
import hello_build.teachers as teachers
teachers.infer_input_size = zoo.infer_input_size
import hello_build.demo as d
d.run_demo(f"/tmp/demo-w{width}-{seed}.hello", seed=seed, progress=False, precision="fp32")
