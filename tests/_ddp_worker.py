"""Run by ``torchrun`` from test_ddp.py: train, or fill the embedding cache, on 2 processes."""

from __future__ import annotations

import json
import sys

import torch
from _cmakit_tiny import tiny_model, tiny_pairs

from cmakit.engine.distributed import init_distributed
from cmakit.engine.embed import EmbeddingCache
from cmakit.engine.trainer import TrainConfig, train

if __name__ == "__main__":
    torch.set_num_threads(1)
    out_dir, params, mode = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    if mode == "train":
        train(tiny_model(), tiny_pairs(64), TrainConfig(**params), out_dir=out_dir)
    else:
        init_distributed("cpu")
        images = tiny_pairs(37).tensors[0]
        data = torch.utils.data.TensorDataset(images, torch.arange(37))
        EmbeddingCache(out_dir).images(tiny_model(), data, preprocessing="none", **params)
