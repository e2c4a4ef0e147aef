"""The engine: training loop and its state, batching, distributed helpers, embedding and its
cache, negative labels, pretraining of the tiny CLIP, the embeddings bundle and the one evaluator."""
