"""Score a bundle's images with DD-Ranking's soft-label metric, the bundle's projector as the teacher.

DD-Ranking (``pip install ddranking``) trains students on the distilled images with its teachers'
logits on every augmented batch (``soft_label_mode="M"``: ``tea_model(images)``, averaged), and the
same on random real images; its Label-Robust Score compares the two and the hard-label gap. Here
``hello_format.ProjectorTeacher`` replaces its teacher checkpoints, so the labels are the bundle's.

    python examples/ddranking_eval.py cifar10_ipc10.hello --dataset CIFAR10 --data-path ./dataset \\
        --model ConvNet-3 --device cuda

DD-Ranking loads the real dataset itself (torchvision downloads CIFAR; ImageFolders under
``--data-path``/train and /val for TinyImageNet and ImageNet1K), with its own class order: the bundle's
class names must be the same names (``--class-names FILE``, one a line, when they differ from the
dataset's folder names). DD-Ranking compares with a full-data student: it trains one on the whole
training set unless its cache holds that accuracy (ddranking 0.2.0: ResNet-18-BN on ImageNet1K and
TinyImageNet). Import ``hello_format`` before ``ddranking``: with the CPU build of torch,
torchvision (which ddranking imports) only loads after hello_format's op shim. The random real images
go through image files (``random_data_format="image"``): ddranking 0.2.0's ``"tensor"`` path calls
``get_random_data_tensors`` without its ``class_map`` argument and fails.
"""

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from hello_format import Bundle, ProjectorTeacher
from hello_format.augment import IMAGENET_MEAN, IMAGENET_STD
from hello_format.teacher import class_order

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)   # DD-Ranking's CIFAR statistics


def harness_statistics(dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std DD-Ranking normalises ``dataset`` with (ImageNet's but for CIFAR)."""
    return (CIFAR_MEAN, CIFAR_STD) if dataset in ("CIFAR10", "CIFAR100") else (IMAGENET_MEAN, IMAGENET_STD)


def harness_images(bundle: Bundle, class_names: list[str], size: tuple[int, int], mean, std) -> torch.Tensor:
    """The bundle's images as DD-Ranking takes them: class by class in the harness's order, ``ipc``
    each (its hard labels are ``arange(C).repeat_interleave(ipc)``), resized to its image size and
    normalised with its statistics."""
    if bundle.ipc is None:
        raise SystemExit("DD-Ranking needs the same number of images per class; this bundle's ipc is null")
    labels = bundle.labels
    order = torch.cat([(labels == i).nonzero().flatten() for i in class_order(bundle.class_names, class_names)])
    images = bundle.images()[order].float() / 255
    if tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(images, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return (images - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--dataset", default="CIFAR10", help="DD-Ranking's dataset name")
    parser.add_argument("--data-path", default="./dataset", help="DD-Ranking's real_data_path")
    parser.add_argument("--class-names", type=Path, help="the dataset's class names, one a line, in its order")
    parser.add_argument("--model", default="ConvNet-3", help="DD-Ranking's student model name")
    parser.add_argument("--im-size", type=int, nargs=2, help="DD-Ranking's image size (its dataset default if unset)")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--num-eval", type=int, default=5)
    parser.add_argument("--lr", type=float, help="the students' learning rate (DD-Ranking searches when unset)")
    parser.add_argument("--temperature", type=float, default=4.0, help="of DD-Ranking's KL soft-label loss")
    parser.add_argument("--eval-full-data", action="store_true",
                        help="train the full-data hard-label student even where DD-Ranking caches its accuracy "
                             "(without a cached one it is trained anyway: ddranking 0.2.0 caches ResNet-18-BN on "
                             "ImageNet1K and TinyImageNet only)")
    parser.add_argument("--save-path", default="./ddranking_results/scores.csv")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def full_data_needed(dataset: str, model: str, asked: bool) -> bool:
    """Whether DD-Ranking must train the full-data hard-label student: asked, or its cache has no accuracy
    for this dataset and model (it then fails after its hard-label learning-rate search)."""
    from ddranking.utils import REAL_DATA_ACC_CACHE

    return asked or f"{dataset}-{model}" not in REAL_DATA_ACC_CACHE


def prepare(args: argparse.Namespace):
    """DD-Ranking's ``LabelRobustScoreSoft`` with the bundle's projector as its only teacher, and the
    bundle's images as it takes them."""
    from ddranking.metrics import LabelRobustScoreSoft
    from torchvision import transforms

    with Bundle.open(args.bundle) as bundle:
        evaluator = LabelRobustScoreSoft(
            dataset=args.dataset, real_data_path=args.data_path, ipc=bundle.ipc, model_name=args.model,
            soft_label_mode="M", soft_label_criterion="kl",
            loss_fn_kwargs={"temperature": args.temperature, "scale_loss": False},
            data_aug_func="cutmix", aug_params={"beta": 1.0}, optimizer="sgd", lr_scheduler="cosine",
            num_eval=args.num_eval, im_size=tuple(args.im_size) if args.im_size else None, num_epochs=args.epochs,
            random_data_format="image", random_data_path=str(Path(args.save_path).parent / "random_data"),
            eval_full_data=full_data_needed(args.dataset, args.model, args.eval_full_data), save_path=args.save_path,
            num_workers=0,
            teacher_model_names=[], device=args.device)
        class_names = (args.class_names.read_text().split("\n") if args.class_names
                       else list(getattr(evaluator.dst_train, "classes", [])))
        class_names = [name for name in class_names if name]
        mean, std = harness_statistics(args.dataset)
        images = harness_images(bundle, class_names, evaluator.im_size, mean, std)
        # how DD-Ranking reads the random real images it saved (it needs a transform for image files)
        evaluator.custom_train_trans = transforms.Compose([
            transforms.Resize(tuple(evaluator.im_size)), transforms.ToTensor(), transforms.Normalize(mean, std)])
        evaluator.teacher_models = [ProjectorTeacher.from_bundle(bundle, class_names, mean=mean, std=std,
                                                                 device=args.device)]
    return evaluator, images


def main(argv=None) -> dict:
    args = parse_args(argv)
    evaluator, images = prepare(args)
    scores = evaluator.compute_metrics(image_tensor=images, syn_lr=args.lr)
    print(json.dumps({key: float(value) for key, value in scores.items()}, indent=2, sort_keys=True))
    return scores


if __name__ == "__main__":
    main()
