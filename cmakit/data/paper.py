"""Image data sets of the paper path: ImageNet-1k, the MOS OoD sets, OpenOOD v1.5 image lists.

Roots come from arguments or from the environment variables in :data:`ENV_VARS`; the expected
folder layouts are in :data:`LAYOUTS`. Unreadable images never crash a pass over the data: a
data set returns a :class:`~cmakit.engine.batching.BadSample` in their place, the collate function
drops it, and the consumer counts and reports them (:func:`cmakit.engine.embed.encode_images`,
:func:`cmakit.engine.trainer.train`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from cmakit.common.constants import MOS_SET_NAMES, PAPER_OOD_GROUPS, TRAIN_PROMPT
from cmakit.models.transforms import paper_transform

log = logging.getLogger(__name__)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")

ENV_VARS = {"imagenet": "CMAKIT_IMAGENET", "mos": "CMAKIT_MOS", "openood": "CMAKIT_OPENOOD"}
#: MOS set name -> the folder names it is found under (DTD's own folder name for Textures).
MOS_SETS: dict[str, tuple[str, ...]] = {
    name: (name, "dtd") if name == "Textures" else (name,) for name in MOS_SET_NAMES.values()
}
#: OpenOOD v1.5's image lists: its ID set, then the near and far OoD sets.
OPENOOD_SETS = ("imagenet", *PAPER_OOD_GROUPS["near"], *PAPER_OOD_GROUPS["far"])
#: Name of OpenOOD v1.5's ID test list as an ID subset of ImageNet-1k val (Table 2's ID set).
OPENOOD_ID_SUBSET = "openood_imagenet"

LAYOUTS = {
    "imagenet": """\
$CMAKIT_IMAGENET/            ImageNet-1k (ILSVRC2012) as ImageFolder trees
  train/n01440764/*.JPEG     1,000 WordNet-id folders, 1,281,167 images
  val/n01440764/*.JPEG       the same 1,000 folders, 50,000 images
Folders sorted by name give class indices 0..999, the order of open_clip's
IMAGENET_CLASSNAMES (OpenAI's class names).""",
    "mos": """\
$CMAKIT_MOS/                 MOS OoD sets (Huang & Li, 2021), images anywhere below each folder
  iNaturalist/images/*.jpg   10,000 images
  SUN/images/*.jpg           10,000 images
  Places/images/*.jpg        10,000 images
  dtd/images/<class>/*.jpg   Textures, 5,640 images (a folder named Textures/ also works)""",
    "openood": """\
$CMAKIT_OPENOOD/             OpenOOD v1.5 data root
  benchmark_imglist/imagenet/test_{imagenet,ssb_hard,ninco,inaturalist,textures,openimage_o}.txt
                             one "relative/path label" per line; test_imagenet.txt (the ID
                             test list, e.g. imagenet_1k/val/ILSVRC2012_val_00000001.JPEG 65)
                             is matched to $CMAKIT_IMAGENET/val by file name
  images_largescale/         image paths of every list except textures are relative to here
  images_classic/            textures' image paths are relative to here""",
}


def resolve_root(kind: str, root: str | os.PathLike | None = None) -> Path:
    """The data root of ``kind`` ("imagenet", "mos", "openood") from ``root`` or its env var.

    Raises:
        KeyError: for an unknown ``kind``.
        FileNotFoundError: when no root is given or it is not a folder; shows the layout.
    """
    if kind not in ENV_VARS:
        raise KeyError(f"Unknown data kind {kind!r}; choose one of {sorted(ENV_VARS)}.")
    value = root if root is not None else os.environ.get(ENV_VARS[kind])
    if value is None:
        raise FileNotFoundError(
            f"No {kind} root: pass it as an argument or set ${ENV_VARS[kind]}. "
            f"Expected layout:\n{LAYOUTS[kind]}"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{kind} root {path} is not a folder. Expected layout:\n{LAYOUTS[kind]}"
        )
    return path


def imagenet_classnames() -> list[str]:
    """OpenAI's 1,000 ImageNet class names (as shipped by open_clip), in class-index order."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return list(IMAGENET_CLASSNAMES)


def imagenet_wnids() -> list[str]:
    """ImageNet-1k's 1,000 WordNet ids (``n01440764`` ...) in class-index order (sorted)."""
    from timm.data import ImageNetInfo  # installed with open_clip

    return list(ImageNetInfo().label_names())


def imagefolder_classnames(folder: str | os.PathLike, names_file: str | os.PathLike | None = None
                           ) -> list[str]:  # fmt: skip
    """Class names of an ImageFolder tree, in class-index order (class folders sorted by name).

    1,000 folders are ImageNet-1k (CLIP's names in sorted-folder order, as
    ``LAYOUTS["imagenet"]``). Any ImageNet subset (ImageNet-100, ImageNet-10/20 as in MCM ...)
    needs no file: folders named by ImageNet WordNet ids get CLIP's names for them. Other trees
    need ``names_file``.

    Args:
        folder: A split folder holding one sub-folder per class (e.g. ``<root>/train``).
        names_file: Text file, either one name per line in sorted-folder order, or
            ``folder<TAB>name`` lines (any order, every folder listed).

    Returns:
        ``[C]`` class names, the prompt text of each class.

    Raises:
        FileNotFoundError: ``folder`` or ``names_file`` does not exist, or holds no class folder.
        ValueError: folders that are not ImageNet WordNet ids and no ``names_file``, or a names
            file that does not match the folders.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} not found. Expected layout:\n{LAYOUTS['imagenet']}")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise FileNotFoundError(f"{folder} holds no class folders. Expected layout:\n"
                                f"{LAYOUTS['imagenet']}")  # fmt: skip
    if names_file is not None:
        return _names_from_file(Path(names_file), classes, folder)
    if len(classes) == 1000:  # ImageNet-1k: sorted folders are class indices 0..999
        return imagenet_classnames()
    names = dict(zip(imagenet_wnids(), imagenet_classnames(), strict=True))
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ValueError(
            f"{folder}: {len(unknown)} of {len(classes)} class folders are not ImageNet WordNet "
            f"ids (e.g. {unknown[0]!r}); give their names with --classnames FILE (one name per "
            "line in sorted-folder order, or 'folder<TAB>name' lines)."
        )
    return [names[c] for c in classes]


def _names_from_file(path: Path, classes: list[str], folder: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"Class-name file {path} not found.")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if lines and all("\t" in line for line in lines):
        table = dict(line.split("\t", 1) for line in lines)
        missing = [c for c in classes if c not in table]
        if missing:
            raise ValueError(f"{path} names no class for folders {missing[:5]} of {folder}.")
        return [table[c].strip() for c in classes]
    if len(lines) != len(classes):
        raise ValueError(f"{path} has {len(lines)} names but {folder} holds {len(classes)} "
                         "class folders; give one name per folder, in sorted-folder order.")  # fmt: skip
    return lines


@dataclasses.dataclass(frozen=True)
class BadSample:
    """Returned by a dataset in place of an item it could not read.

    Attributes:
        path: The file that failed.
        error: The exception message.
    """

    path: str
    error: str


class ImageFiles(Dataset):
    """Labelled image files; yields ``(image, label)`` or a :class:`BadSample`.

    Args:
        samples: ``(path, label)`` pairs; label -1 marks OoD images.
        transform: PIL image -> tensor (default: :func:`paper_transform` test transform).
        name: Identity of the set, used in cache fingerprints and reports.
    """

    def __init__(self, samples: Sequence[tuple[str, int]], transform: Callable | None = None,
                 name: str = "images") -> None:  # fmt: skip
        self.samples = list(samples)
        self.transform = transform or paper_transform()
        self.name = name

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> torch.Tensor:
        """``[N]`` long labels."""
        return torch.tensor([label for _, label in self.samples], dtype=torch.long)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                img.load()
                image = self.transform(img)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            return BadSample(str(path), f"{type(err).__name__}: {err}")
        return image, label


def _image_files(folder: Path) -> list[str]:
    found = []
    for dirpath, _, files in os.walk(folder):
        found += [os.path.join(dirpath, f) for f in files if f.lower().endswith(IMG_EXTENSIONS)]
    return sorted(found)


def imagenet_split(
    split: str = "val",
    root: str | os.PathLike | None = None,
    *,
    transform: Callable | None = None,
    classnames: Sequence[str] | None = None,
) -> ImageFiles:
    """ImageNet-1k ``train`` or ``val`` (layout: ``LAYOUTS["imagenet"]``).

    Args:
        split: "train" or "val".
        root: Data root; default ``$CMAKIT_IMAGENET``.
        transform: Default :func:`paper_transform` (train transform for "train").
        classnames: Expected classes (default OpenAI's 1,000); the number of class folders must
            match it.

    Raises:
        FileNotFoundError: missing root or split folder, or a class folder without images.
        ValueError: number of class folders differs from ``len(classnames)``.
    """
    folder = resolve_root("imagenet", root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} not found. Expected layout:\n{LAYOUTS['imagenet']}")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    expected = len(classnames) if classnames is not None else 1000
    if len(classes) != expected:
        raise ValueError(
            f"{folder} holds {len(classes)} class folders, expected {expected}. "
            f"Expected layout:\n{LAYOUTS['imagenet']}"
        )
    samples = []
    for label, wnid in enumerate(classes):
        files = _image_files(folder / wnid)
        if not files:
            raise FileNotFoundError(f"Class folder {folder / wnid} holds no images.")
        samples += [(f, label) for f in files]
    tf = transform or paper_transform(train=split == "train")
    return ImageFiles(samples, tf, name=f"imagenet-{split}")


def mos_dataset(name: str, root: str | os.PathLike | None = None, *,
                transform: Callable | None = None) -> ImageFiles:  # fmt: skip
    """One MOS OoD set: "iNaturalist", "SUN", "Places" or "Textures" (label -1).

    Raises:
        KeyError: unknown ``name``.
        FileNotFoundError: missing folder (paths tried are listed) or a folder without images.
    """
    if name not in MOS_SETS:
        raise KeyError(f"Unknown MOS set {name!r}; choose one of {list(MOS_SETS)}.")
    base = resolve_root("mos", root)
    tried = [base / d for d in MOS_SETS[name]]
    folder = next((p for p in tried if p.is_dir()), None)
    if folder is None:
        raise FileNotFoundError(
            f"MOS set {name}: none of {[str(p) for p in tried]} exists. "
            f"Expected layout:\n{LAYOUTS['mos']}"
        )
    files = _image_files(folder)
    if not files:
        raise FileNotFoundError(f"MOS set {name}: no images below {folder}.")
    return ImageFiles([(f, -1) for f in files], transform, name=f"mos-{name}")


def openood_dataset(name: str, root: str | os.PathLike | None = None, *,
                    transform: Callable | None = None) -> ImageFiles:  # fmt: skip
    """One OpenOOD v1.5 ImageNet test list, e.g. "ninco" (labels as in the list; OoD = -1).

    Raises:
        KeyError: unknown ``name``.
        FileNotFoundError: missing list file or image folder (path shown with the layout).
        ValueError: a malformed line (file and line number shown).
    """
    if name not in OPENOOD_SETS:
        raise KeyError(f"Unknown OpenOOD set {name!r}; choose one of {list(OPENOOD_SETS)}.")
    base = resolve_root("openood", root)
    listing = base / "benchmark_imglist" / "imagenet" / f"test_{name}.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"{listing} not found. Expected layout:\n{LAYOUTS['openood']}")
    images = base / ("images_classic" if name == "textures" else "images_largescale")
    if name != "imagenet" and not images.is_dir():  # the ID list is matched to val by name
        raise FileNotFoundError(
            f"OpenOOD set {name}: image folder {images} not found (the paths in {listing} are "
            f"relative to it). Expected layout:\n{LAYOUTS['openood']}"
        )
    samples = []
    for n, line in enumerate(listing.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{listing}:{n}: expected 'relative/path label', got {line!r}.")
        label = int(parts[1]) if name == "imagenet" else -1
        samples.append((str(images / parts[0]), label))
    return ImageFiles(samples, transform, name=f"openood-{name}")


def openood_id_subset(id_test: ImageFiles, root: str | os.PathLike | None = None) -> list[int]:
    """OpenOOD v1.5's ImageNet-1k ID test list as indices into the ImageNet val set ``id_test``.

    OpenOOD's ``test_imagenet.txt`` names ImageNet-1k val images (``imagenet_1k/val/<file>``,
    relative to ``images_largescale/``). Its files are the val files the run already embeds, so
    they are matched by file name instead of being read twice: Table 2 is measured against
    exactly OpenOOD's ID images, Table 1 against the full val.

    Args:
        id_test: ImageNet-1k val (:func:`imagenet_split` ``"val"``).
        root: OpenOOD v1.5 root; default ``$CMAKIT_OPENOOD``.

    Returns:
        Sorted indices into ``id_test.samples``, one per listed image.

    Raises:
        FileNotFoundError: missing root or list (path shown with the layout).
        ValueError: a listed file that ``id_test`` lacks, a file name ``id_test`` holds twice, or
            a listed label that differs from the val folder's class (counts and examples shown).
    """
    listing = openood_dataset("imagenet", root, transform=id_test.transform)
    where: dict[str, int] = {}
    twice: set[str] = set()
    for i, (path, _) in enumerate(id_test.samples):
        name = os.path.basename(path)
        if name in where:
            twice.add(name)
        where[name] = i
    names = [os.path.basename(path) for path, _ in listing.samples]
    problems = {
        "not in the ImageNet val set": [n for n in names if n not in where],
        "held twice by the ImageNet val set": [n for n in names if n in twice],
    }
    rows = [where.get(n, -1) for n in names]
    problems["labelled differently from the val class folders"] = [
        n for n, i, (_, label) in zip(names, rows, listing.samples, strict=True)
        if i >= 0 and id_test.samples[i][1] != label
    ]  # fmt: skip
    for problem, bad in problems.items():
        if bad:
            raise ValueError(
                f"OpenOOD's ID list lists {len(bad)} of {len(names)} images {problem} "
                f"(e.g. {bad[:3]}); point $CMAKIT_IMAGENET and $CMAKIT_OPENOOD at the same "
                "ImageNet-1k val."
            )
    return sorted(rows)


class PromptPairs(Dataset):
    """(image, class-prompt tokens) pairs for fine-tuning: FLYP/CMA's training data.

    The prompt of every class is tokenized once (``[C, L]`` rows cached); item i is
    ``(image_i, tokens[label_i])``. Bad images pass through as :class:`BadSample`.

    Args:
        images: A labelled image data set (e.g. :func:`imagenet_split` "train").
        tokenizer: open_clip tokenizer (list of str -> ``[n, L]`` long tensor).
        classnames: Class names in label order.
        template: Prompt with one ``{}``; the paper trains with "a photo of a {}".
    """

    def __init__(self, images: ImageFiles, tokenizer: Callable, classnames: Sequence[str],
                 template: str = TRAIN_PROMPT) -> None:  # fmt: skip
        self.images = images
        self.tokens = tokenizer([template.format(c) for c in classnames]).long()  # (C, L)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        item = self.images[index]
        if isinstance(item, BadSample):
            return item
        image, label = item
        return image, self.tokens[label]
