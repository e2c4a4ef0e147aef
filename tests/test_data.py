"""Paper-path data sets on a fixture tree of tiny PNGs, including one corrupt image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cmakit.data.paper import (
    LAYOUTS,
    PromptPairs,
    imagenet_classnames,
    imagenet_split,
    mos_dataset,
    openood_dataset,
    resolve_root,
)
from cmakit.engine.batching import BadSample, collate_pairs
from cmakit.models.transforms import paper_transform

CLASSES = ["tench", "goldfish", "great white shark"]


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 24, 3), value, dtype=np.uint8)).save(path)


@pytest.fixture
def image_tree(tmp_path) -> Path:
    """ImageNet-style train/val folders, MOS folders and an OpenOOD list tree."""
    for split in ("train", "val"):
        for c, wnid in enumerate(["n01440764", "n01443537", "n01484850"]):
            for k in range(2):
                _png(tmp_path / "imagenet" / split / wnid / f"{k}.JPEG", 40 * c + k)
    (tmp_path / "imagenet" / "val" / "n01443537" / "9.JPEG").write_bytes(b"not an image")
    _png(tmp_path / "mos" / "dtd" / "images" / "banded" / "b1.jpg", 10)
    _png(tmp_path / "mos" / "SUN" / "images" / "s1.jpg", 20)
    oo = tmp_path / "openood"
    _png(oo / "images_largescale" / "ninco" / "a.png", 30)
    _png(oo / "images_classic" / "texture" / "t.png", 50)
    lists = oo / "benchmark_imglist" / "imagenet"
    lists.mkdir(parents=True)
    (lists / "test_ninco.txt").write_text("ninco/a.png 0\n")
    (lists / "test_textures.txt").write_text("texture/t.png 0\n\n")
    return tmp_path


def test_paper_transforms():
    img = Image.new("RGB", (40, 30), (255, 0, 0))
    test = paper_transform(16)(img)
    assert test.shape == (3, 16, 16)
    torch.testing.assert_close(test[0, 8, 8], torch.tensor((1 - 0.48145466) / 0.26862954))
    assert paper_transform((16, 16), train=True)(img.convert("L")).shape == (3, 16, 16)


def test_imagenet_split_with_a_corrupt_image(image_tree):
    val = imagenet_split("val", image_tree / "imagenet", classnames=CLASSES)
    assert len(val) == 7 and val.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    items = [val[i] for i in range(len(val))]
    bad = [it for it in items if isinstance(it, BadSample)]
    assert len(bad) == 1 and bad[0].path.endswith("9.JPEG")
    images, labels, dropped = collate_pairs(items)
    assert images.shape == (6, 3, 224, 224) and labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert dropped == bad


def test_prompt_pairs_cache_tokens_per_class(image_tree):
    train = imagenet_split("train", image_tree / "imagenet", classnames=CLASSES,
                           transform=paper_transform(16, train=True))  # fmt: skip
    calls = []

    def tokenizer(texts):
        calls.append(list(texts))
        return torch.arange(len(texts) * 4).view(len(texts), 4)

    pairs = PromptPairs(train, tokenizer, CLASSES)
    assert calls == [[f"a photo of a {c}" for c in CLASSES]]
    image, tokens = pairs[2]
    assert image.shape == (3, 16, 16) and tokens.tolist() == [4, 5, 6, 7]


def test_imagenet_uses_openai_names_and_checks_folder_count(image_tree):
    assert len(imagenet_classnames()) == 1000 and imagenet_classnames()[1] == "goldfish"
    with pytest.raises(ValueError, match="holds 3 class folders, expected 1000"):
        imagenet_split("val", image_tree / "imagenet")


def test_mos_and_openood_sets(image_tree):
    tex = mos_dataset("Textures", image_tree / "mos")
    assert len(tex) == 1 and tex.labels.tolist() == [-1] and tex.name == "mos-Textures"
    ninco = openood_dataset("ninco", image_tree / "openood")
    assert ninco.samples[0][0].endswith("images_largescale/ninco/a.png")
    textures = openood_dataset("textures", image_tree / "openood")
    assert textures.samples == [(str(image_tree / "openood/images_classic/texture/t.png"), -1)]
    assert textures[0][0].shape == (3, 224, 224)


def test_missing_folders_show_path_and_layout(image_tree, monkeypatch):
    monkeypatch.delenv("CMAKIT_IMAGENET", raising=False)
    with pytest.raises(FileNotFoundError, match=r"\$CMAKIT_IMAGENET.*\n.*train/n01440764"):
        resolve_root("imagenet")
    monkeypatch.setenv("CMAKIT_MOS", str(image_tree / "mos"))
    with pytest.raises(FileNotFoundError, match=r"(?s)iNaturalist.\] exists.*iNaturalist/images"):
        mos_dataset("iNaturalist")
    with pytest.raises(FileNotFoundError, match=r"test_ssb_hard.txt not found"):
        openood_dataset("ssb_hard", image_tree / "openood")
    with pytest.raises(FileNotFoundError, match=r"/nowhere is not a folder"):
        imagenet_split("val", "/nowhere")
    with pytest.raises(KeyError, match="Places"):
        mos_dataset("Place", image_tree / "mos")
    assert set(LAYOUTS) == {"imagenet", "mos", "openood"}


def test_malformed_image_list_line(image_tree):
    (image_tree / "openood/benchmark_imglist/imagenet/test_ninco.txt").write_text("a.png zero\n")
    with pytest.raises(ValueError, match=r"test_ninco.txt:1: expected 'relative/path label'"):
        openood_dataset("ninco", image_tree / "openood")
