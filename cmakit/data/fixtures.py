"""A miniature of the paper's data and weights, laid out exactly as the real ones, for CI.

:func:`write_paper_tree` writes ImageNet-1k (1,000 WordNet-id class folders, a few images each,
``train/`` and ``val/``), the MOS sets and an OpenOOD v1.5 data root with its image lists, in
the layouts of :data:`cmakit.data.paper.LAYOUTS`; :func:`write_openai_weights` writes random
weights of an open_clip architecture in the format OpenAI ships (fp16 matrices plus
``input_resolution`` / ``context_length`` / ``vocab_size``). With the registered 224-px
``cmakit-paper-tiny`` architecture, the paper profile then runs its real transforms, loaders,
mining over WordNet and table layouts in minutes on a CPU::

    python -m cmakit.data.fixtures /tmp/paper-fixture
    bash run_all.sh --profile paper --out /tmp/paper-run --set model=cmakit-paper-tiny \\
        --set pretrained=/tmp/paper-fixture/ViT-tiny-openai.pt \\
        --set imagenet_root=/tmp/paper-fixture/imagenet --set mos_root=/tmp/paper-fixture/mos \\
        --set openood_root=/tmp/paper-fixture/openood --set finetune_max_steps=2 ...

The images are flat colours with a little noise (a class's colour is fixed), so nothing here
measures detection quality: the tree exercises code paths, not science.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cmakit.data.paper import MOS_SETS, OPENOOD_SETS

log = logging.getLogger(__name__)

PAPER_TINY_MODEL = "cmakit-paper-tiny"  # cmakit/models/configs/cmakit-paper-tiny.json


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids in class-index order (``n01440764`` ... ).

    Read from timm's ImageNet metadata (installed with open_clip); without timm, 1,000 sorted
    stand-ins ``n00000000`` ... ``n00000999`` (cmakit only needs 1,000 folders whose sorted
    order is the class order).
    """
    try:
        from timm.data import ImageNetInfo

        wnids = list(ImageNetInfo().label_names())
    except ImportError:
        wnids = [f"n{k:08d}" for k in range(1000)]
    if len(wnids) != 1000 or wnids != sorted(wnids):
        raise RuntimeError(f"Expected 1,000 sorted ImageNet-1k WordNet ids, got {len(wnids)}.")
    return wnids


def _image(path: Path, colour: int, rng: np.random.Generator, size: int) -> str:
    base = np.array([colour % 251, (colour * 7) % 253, (colour * 13) % 255], dtype=np.int16)
    noise = rng.integers(-12, 13, size=(size, size, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path)
    return str(path)


def write_paper_tree(
    root: str | os.PathLike,
    *,
    per_class: int = 1,
    per_ood_set: int = 8,
    size: int = 24,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the miniature ImageNet-1k, MOS and OpenOOD v1.5 trees under ``root``.

    Args:
        root: Destination folder (created).
        per_class: Images per ImageNet class and split (1,000 classes: 1,000 x ``per_class``
            images in ``train/`` and as many in ``val/``).
        per_ood_set: Images per MOS set and per OpenOOD OoD list (OpenOOD's ID list,
            ``test_imagenet.txt``, names the val images of every other class).
        size: Side of every image in pixels (the paper transforms resize to 224).
        seed: Seeds the pixel noise.

    Returns:
        ``{"imagenet": ..., "mos": ..., "openood": ...}``: the three data roots.
    """
    root, rng = Path(root), np.random.default_rng(seed)
    roots = {kind: root / kind for kind in ("imagenet", "mos", "openood")}
    wnids, val_files = imagenet_wnids(), []
    for split in ("train", "val"):
        for label, wnid in enumerate(wnids):
            for k in range(per_class):
                index = label * per_class + k + 1
                name = f"{wnid}_{k}.png" if split == "train" else f"ILSVRC2012_val_{index:08d}.png"
                path = _image(roots["imagenet"] / split / wnid / name, label, rng, size)
                if split == "val":
                    val_files.append((path, label))
    for n, folders in enumerate(MOS_SETS.values()):
        sub = "images/banded" if folders[-1] == "dtd" else "images"  # DTD keeps class folders
        for k in range(per_ood_set):
            _image(roots["mos"] / folders[-1] / sub / f"{k}.png", 1000 + 40 * n + k, rng, size)
    lists = roots["openood"] / "benchmark_imglist" / "imagenet"
    lists.mkdir(parents=True, exist_ok=True)
    # OpenOOD's ID list names ImageNet val files, which cmakit matches by name: every other class.
    id_rows = [f"imagenet_1k/val/{Path(path).name} {label}\n"
               for path, label in val_files[::2]]  # fmt: skip
    (lists / "test_imagenet.txt").write_text("".join(id_rows))
    for n, name in enumerate(s for s in OPENOOD_SETS if s != "imagenet"):
        base = roots["openood"] / ("images_classic" if name == "textures" else "images_largescale")
        rel = [f"{name}/{k}.png" for k in range(per_ood_set)]
        for k, r in enumerate(rel):
            _image(base / r, 2000 + 40 * n + k, rng, size)
        (lists / f"test_{name}.txt").write_text("".join(f"{r} -1\n" for r in rel))
    return roots


def openai_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CLIP's weights as OpenAI ships them: matrices in fp16, plus the three shape entries."""
    sd = {k: v.detach().half() if v.ndim >= 2 else v.detach().clone()
          for k, v in model.state_dict().items()}  # fmt: skip
    size = model.visual.image_size
    sd.update(input_resolution=torch.tensor(size[0] if isinstance(size, tuple) else size),
              context_length=torch.tensor(model.context_length),
              vocab_size=torch.tensor(model.vocab_size))  # fmt: skip
    return sd


def write_openai_weights(
    path: str | os.PathLike, model_name: str = PAPER_TINY_MODEL, *, seed: int = 0
) -> Path:
    """Random-init weights of ``model_name`` in OpenAI's format (read with QuickGELU on)."""
    import open_clip

    from cmakit.models.factory import register_model_configs

    register_model_configs()
    torch.manual_seed(seed)
    model = open_clip.create_model(model_name, force_quick_gelu=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(openai_state_dict(model), path)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m cmakit.data.fixtures OUT``: write the miniature tree and the weights."""
    p = argparse.ArgumentParser(
        prog="python -m cmakit.data.fixtures", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("out", help="folder to write (imagenet/, mos/, openood/, ViT-tiny-openai.pt)")
    p.add_argument("--per-class", type=int, default=1, help="images per ImageNet class and split")
    args = p.parse_args(argv)
    roots = write_paper_tree(args.out, per_class=args.per_class)
    weights = write_openai_weights(Path(args.out) / "ViT-tiny-openai.pt")
    print(*(f"{k}_root={v}" for k, v in roots.items()), f"pretrained={weights}", sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
