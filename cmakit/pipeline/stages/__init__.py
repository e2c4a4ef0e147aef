"""The stages of a run, one module each, in the order of their products.

``base_model`` (the zero-shot model) → ``finetune`` (FLYP / CMA models) → ``negative_labels``
(NegLabel's and CSP's) → ``embeddings`` (one bundle per model) → ``records`` (the per-seed
record) → ``ablation`` (the λ grid). A stage asks the stages above it for their products and
builds nothing of theirs. Every product is written into the run folder (``cfg.run_dir``) under
the fingerprint of exactly the inputs that determine it (:mod:`cmakit.pipeline.products`): a
stage whose product exists loads it instead of recomputing, so an interrupted run resumes where
it stopped, each notebook can be re-run alone, and a changed parameter recomputes what it
affects and nothing else. Models are named by their CMA weight: ``zero_shot`` is the pretrained
model, ``flyp`` is λ = 0, ``cma`` is λ = ``cfg.lam``, and an ablation point at the same λ is the
same product. The notebooks reach every stage through :mod:`cmakit.pipeline.steps`.
"""
