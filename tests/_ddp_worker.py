"""Run by ``torchrun`` from test_ddp.py: train, fill the embedding cache, or take the first
step's gradients, on N processes."""

from __future__ import annotations

import json
import sys

import torch
from _cmakit_tiny import AugmentedPairs, first_step_gradients, tiny_model, tiny_pairs

from cmakit.engine.distributed import get_rank, init_distributed
from cmakit.engine.embed import EmbeddingCache
from cmakit.engine.trainer import TrainConfig, train

if __name__ == "__main__":
    torch.set_num_threads(1)
    out_dir, params, mode = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    data = AugmentedPairs(64) if params.pop("augmented", False) else tiny_pairs(64)
    if mode == "train":
        train(tiny_model(), data, TrainConfig(**params), out_dir=out_dir)
    elif mode == "grads":
        terms, grads = first_step_gradients(data, params)
        if get_rank() == 0:
            torch.save({"terms": terms, "grads": grads}, f"{out_dir}/grads.pt")
    else:
        init_distributed("cpu")
        images = tiny_pairs(37).tensors[0]
        data = torch.utils.data.TensorDataset(images, torch.arange(37))
        EmbeddingCache(out_dir).images(tiny_model(), data, preprocessing="none", **params)
