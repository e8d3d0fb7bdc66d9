#!/usr/bin/env bash
# How consistent are the teacher's own labels on the student's views? The final teacher scored against
# itself on the mirror image of each report view (--mirror), beside its twin (second-teacher.sh) and the
# projector of the whole-image default IPC 10 bundle.
set -ex
cd "$(dirname "$0")/../.."
CACHE=bench/results/cache
HF_HUB_OFFLINE=1 .venv/bin/python bench/view_agreement.py $CACHE/bundles/cifar10-ipc10-9ff6e0e6cb64eea9.hello \
  --teacher $CACHE/teacher/9f840154b672d4f9/teacher_convnet3_epoch0006.safetensors \
  --compare $CACHE/teacher/second-seed1/teacher_convnet3_epoch0006.safetensors --mirror
