"""Embeddings: encoders, the cache, and negative-label mining on a tiny model."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
from _cmakit_tiny import tiny_model
from PIL import Image

from cmakit.data.paper import ImageFiles
from cmakit.engine.embed import EmbeddingCache, encode_images, encode_texts, model_digest
from cmakit.engine.negatives import (
    NegativeLabel,
    encode_negative_labels,
    load_negative_labels,
    mine_negatives,
    save_negative_labels,
)
from cmakit.models.transforms import paper_transform

torch.set_num_threads(1)


class _SmallVocab:
    """Maps the real tokenizer's ids into the tiny model's 64-token vocabulary."""

    def __init__(self):
        self.inner = open_clip.tokenize

    def __call__(self, texts):
        ids = self.inner(list(texts), context_length=8)
        return torch.where(ids > 0, ids % 62 + 1, ids)


@pytest.fixture
def files(tmp_path):
    paths = []
    for k in range(5):
        p = tmp_path / f"{k}.png"
        Image.fromarray(np.full((12, 12, 3), 50 * k, dtype=np.uint8)).save(p)
        paths.append((str(p), k % 2))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    paths.insert(2, (str(tmp_path / "broken.png"), 1))
    return ImageFiles(paths, paper_transform(16), name="fixture")


def test_encode_images_skips_corrupt_and_keeps_order(files):
    model = tiny_model()
    emb, labels = enc = encode_images(model, files, batch_size=4, device="cpu", num_workers=0)
    assert emb.shape == (5, 16) and emb.dtype == np.float32
    assert labels.tolist() == [0, 1, 0, 1, 0]
    assert len(enc.bad_paths) == 1 and enc.bad_paths[0].endswith("broken.png")
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    one = encode_images(model, files, batch_size=1, device="cpu", num_workers=0, progress=False)
    np.testing.assert_allclose(one.embeddings, emb, atol=1e-5)


def test_encode_images_tensor_dataset_fast_path():
    x, y = torch.randn(7, 3, 16, 16), torch.arange(7)
    model = tiny_model()
    emb, labels = encode_images(
        model, torch.utils.data.TensorDataset(x, y), batch_size=3, device="cpu"
    )
    with torch.no_grad():
        ref = model.encode_image(x, normalize=True).numpy()
    np.testing.assert_allclose(emb, ref, atol=1e-5)
    assert labels.tolist() == list(range(7))


def test_encode_texts_rows_follow_input():
    model, tok = tiny_model(), _SmallVocab()
    texts = ["a photo of a cat", "a dog", "The nice tench"]
    emb = encode_texts(model, tok, texts, batch_size=2, device="cpu")
    single = np.concatenate([encode_texts(model, tok, [t], device="cpu") for t in texts])
    np.testing.assert_allclose(emb, single, atol=1e-5)
    with pytest.raises(ValueError, match="non-empty list"):
        encode_texts(model, tok, "a cat", device="cpu")


def test_cache_loads_second_time_and_keys_on_weights(files, tmp_path):
    cache, model = EmbeddingCache(tmp_path / "cache"), tiny_model()
    first = cache.images(model, files, preprocessing="test16", device="cpu", num_workers=0)
    written = sorted((tmp_path / "cache").glob("images-*.npz"))
    assert len(written) == 1 and first.bad_paths[0].endswith("broken.png")
    mtime = written[0].stat().st_mtime_ns
    again = cache.images(model, files, preprocessing="test16", device="cpu", num_workers=0)
    assert written[0].stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.embeddings, first.embeddings)
    assert again.bad_paths == first.bad_paths
    digest = model_digest(model)
    with torch.no_grad():
        model.logit_scale.add_(1.0)
    assert model_digest(model) != digest
    cache.images(model, files, preprocessing="test16", device="cpu", num_workers=0)
    cache.images(model, files, preprocessing="other", device="cpu", num_workers=0)
    assert len(list((tmp_path / "cache").glob("images-*.npz"))) == 3
    texts = cache.texts(model, _SmallVocab(), ["a", "b"], device="cpu")
    assert texts.shape == (2, 16) and len(list((tmp_path / "cache").glob("texts-*.npz"))) == 1


def test_mine_save_load_and_reencode_negatives(tmp_path):
    model, tok = tiny_model(), _SmallVocab()
    lexicon = [(f"thing{i}", "noun") for i in range(20)] + [(f"shiny{i}", "adj") for i in range(10)]
    mined = mine_negatives(model, tok, ["cat", "dog"], candidates=lexicon, keep=0.5, device="cpu")
    nouns = [m for m in mined if m.pos == "noun"]
    assert len(nouns) == 10 and len(mined) == 15 and mined[-1].pos == "adj"
    assert [m.affinity for m in nouns] == sorted(m.affinity for m in nouns)
    path = save_negative_labels(tmp_path / "neg.tsv", mined)
    back = load_negative_labels(path)
    assert [(b.word, b.pos) for b in back] == [(m.word, m.pos) for m in mined]
    emb = encode_negative_labels(model, tok, back, device="cpu")
    ref = encode_texts(model, tok, [f"This is a {back[-1].word} photo"], device="cpu")
    np.testing.assert_allclose(emb[-1:], ref, atol=1e-5)
    with pytest.raises(ValueError, match="Unknown part"):
        encode_negative_labels(model, tok, [("run", "verb")], device="cpu")
    (tmp_path / "bad.tsv").write_text("word\tpos\taffinity\nfoo\tnoun\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2"):
        load_negative_labels(tmp_path / "bad.tsv")
    assert isinstance(back[0], NegativeLabel)
