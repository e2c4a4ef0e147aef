"""load_clip: weight formats, QuickGELU detection, strict loading and its error messages."""

from __future__ import annotations

import open_clip
import pytest
import torch
from _cmakit_tiny import TINY_NAME, register_tiny, tiny_model

from cmakit.models.factory import (
    load_clip,
    model_image_size,
    register_model_configs,
    uses_quick_gelu,
)
from cmakit.models.weights import read_weights, save_model

torch.set_num_threads(2)


def _openai_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What OpenAI ships: the same key names, weights in float16, three extra entries."""
    sd = {k: v.half() if v.ndim >= 2 else v.clone() for k, v in model.state_dict().items()}
    sd.update(input_resolution=torch.tensor(16), context_length=torch.tensor(8),
              vocab_size=torch.tensor(64))  # fmt: skip
    return sd


def _features(model):
    g = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, *model.visual.image_size, generator=g)
    tokens = torch.randint(1, 60, (2, model.context_length), generator=g)
    with torch.no_grad():
        return model.encode_image(image, normalize=True), model.encode_text(tokens, normalize=True)


def test_cmakit_tiny_configs_are_registered():
    names = register_model_configs()
    assert set(names) <= set(open_clip.list_models())


def test_image_size_comes_from_the_model_config():
    assert model_image_size("ViT-B-16") == 224 and model_image_size("cmakit-micro") == 16
    assert model_image_size("ViT-L-14-336") == 336
    with pytest.raises(ValueError, match="Unknown open_clip architecture"):
        model_image_size("ViT-B-61")


def test_openai_state_dict_turns_quick_gelu_on(tmp_path):
    register_tiny()
    torch.manual_seed(0)
    ref = open_clip.create_model(TINY_NAME, force_quick_gelu=True)
    path = tmp_path / "openai.pt"
    torch.save(_openai_state_dict(ref), path)
    model, preprocess, tokenizer = load_clip(TINY_NAME, pretrained=str(path), device="cpu")
    assert uses_quick_gelu(model) and read_weights(path).source == "openai"
    ref.load_state_dict(
        {k: v.float() for k, v in _openai_state_dict(ref).items() if k in ref.state_dict()}
    )
    for a, b in zip(_features(model), _features(ref), strict=True):
        torch.testing.assert_close(a, b)
    gelu, _, _ = load_clip(TINY_NAME, pretrained=str(path), device="cpu", quick_gelu=False)
    assert not uses_quick_gelu(gelu)
    assert not torch.allclose(_features(gelu)[0], _features(model)[0])
    assert preprocess.transforms[1].size == (16, 16) and tokenizer(["a cat"]).shape[1] == 8


def test_openai_jit_archive_is_detected(tmp_path):
    ref = tiny_model()
    ref.register_buffer("input_resolution", torch.tensor(16))
    image, tokens = torch.randn(1, 3, 16, 16), torch.randint(1, 60, (1, 8))
    with pytest.warns(Warning):  # tracing a model with Python control flow warns
        traced = torch.jit.trace(ref, (image, tokens), check_trace=False)
    traced.save(str(tmp_path / "jit.pt"))
    weights = read_weights(tmp_path / "jit.pt")
    assert weights.source == "openai-jit" and "input_resolution" not in weights.state_dict
    model, _, _ = load_clip(TINY_NAME, pretrained=str(tmp_path / "jit.pt"), device="cpu")
    assert uses_quick_gelu(model)
    assert torch.equal(model.visual.proj, ref.visual.proj)


def test_cmakit_model_file_keeps_activation(tmp_path):
    ref = tiny_model()
    save_model(ref, tmp_path / "model.pt", name=TINY_NAME)
    model, _, _ = load_clip(TINY_NAME, checkpoint=tmp_path / "model.pt", device="cpu")
    assert not uses_quick_gelu(model) and model.cmakit_name == TINY_NAME
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters(), strict=True))


def test_safetensors_and_open_clip_formats(tmp_path):
    from safetensors.torch import save_file

    ref = tiny_model(seed=3)
    save_file(
        {k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "w.safetensors")
    )
    torch.save(
        {"epoch": 1, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}},
        tmp_path / "oc.pt",
    )
    for path in ("w.safetensors", "oc.pt"):
        model, _, _ = load_clip(TINY_NAME, pretrained=str(tmp_path / path), device="cpu")
        assert torch.equal(model.logit_scale, ref.logit_scale)


def test_missing_file_unknown_name_and_tag():
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_clip(TINY_NAME, checkpoint="nope.pt", device="cpu")
    with pytest.raises(ValueError, match="Close matches: .*ViT-B-16"):
        load_clip("ViT-B-61", device="cpu")
    with pytest.raises(FileNotFoundError, match="neither a file nor an open_clip tag"):
        load_clip(TINY_NAME, pretrained="weights/missing.pt", device="cpu")


def test_wrong_architecture_and_unexpected_keys(tmp_path):
    save_model(tiny_model(), tmp_path / "tiny.pt")
    with pytest.raises(ValueError, match=r"of another shape: .*architecture name"):
        load_clip("cmakit-micro", checkpoint=tmp_path / "tiny.pt", device="cpu")
    sd = dict(tiny_model().state_dict(), **{"head.extra.weight": torch.zeros(2)})
    del sd["ln_final.bias"]
    torch.save(sd, tmp_path / "extra.pt")
    with pytest.raises(
        ValueError, match=r"1 missing: ln_final.bias; 1 unexpected: head.extra.weight"
    ):
        load_clip(TINY_NAME, checkpoint=tmp_path / "extra.pt", device="cpu")
    torch.save({"epoch": 3, "notes": "x"}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="not a state dict"):
        load_clip(TINY_NAME, checkpoint=tmp_path / "junk.pt", device="cpu")


@pytest.mark.slow
def test_vit_b16_openai_and_official_cma_checkpoints(tmp_path):
    torch.manual_seed(0)
    ref = open_clip.create_model("ViT-B-16", force_quick_gelu=True)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(p.half().float())  # make the fp16 OpenAI copy exact
    torch.save(_openai_state_dict(ref), tmp_path / "ViT-B-16.pt")
    model, preprocess, tokenizer = load_clip(
        "ViT-B-16", pretrained=str(tmp_path / "ViT-B-16.pt"), device="cpu"
    )
    assert uses_quick_gelu(model)
    del model
    official = {f"module.{k}": v for k, v in ref.state_dict().items()}
    torch.save(
        {"epoch": 10, "model_state_dict": official, "optimizer_state_dict": {}}, tmp_path / "cma.pt"
    )
    del official
    model, preprocess, tokenizer = load_clip(
        "ViT-B-16", checkpoint=tmp_path / "cma.pt", device="cpu"
    )
    assert uses_quick_gelu(model)
    from PIL import Image

    image = preprocess(Image.new("RGB", (300, 260), (120, 30, 200))).unsqueeze(0)
    assert image.shape == (1, 3, 224, 224)
    with torch.no_grad():
        got = model.encode_image(image, normalize=True)
        want = ref.encode_image(image, normalize=True)
        text = model.encode_text(tokenizer(["The nice goldfish"]), normalize=True)
    torch.testing.assert_close(got, want)
    assert got.shape == text.shape == (1, 512)
