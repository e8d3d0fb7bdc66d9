"""Do the demo's HelloDataset and online-teacher students agree digit by digit, or only in their counts?
python bench/results/demo-width/same-top1.py SEED: the demo for SEED, with each student's test predictions
recorded (hard, HelloDataset, teacher) and compared."""
import sys

import torch

import hello_format  # noqa: F401
import hello_build.evaluation as evaluation
import hello_build.demo as demo

predictions, truth = [], []
measure = evaluation.top1


def recording_top1(model, val, *, device, group=None):
    model.eval()
    mean = torch.tensor(evaluation.STUDENT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(evaluation.STUDENT_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        pairs = [(model((x.float() / 255 - mean) / std).argmax(1), y) for x, y in torch.utils.data.DataLoader(val, batch_size=256)]
    predictions.append(torch.cat([p for p, _ in pairs]))
    truth[:] = [torch.cat([y for _, y in pairs])]
    return measure(model, val, device=device, group=group)


evaluation.top1 = recording_top1
demo.run_demo(f"/tmp/probe-{sys.argv[1]}.hello", seed=int(sys.argv[1]), progress=False)
hard, projector, teacher = predictions
y = truth[0]
print(f"correct: hard {(hard == y).sum()}, HelloDataset {(projector == y).sum()}, teacher {(teacher == y).sum()} of {len(y)}")
print(f"HelloDataset and teacher students predict the same digit on {(projector == teacher).sum()} of {len(y)}; "
      f"right only with HelloDataset labels {((projector == y) & (teacher != y)).sum()}, only with the teacher's {((teacher == y) & (projector != y)).sum()}")
