"""The one home of every value that more than one part of cmakit shares.

Normalisation constants, prompts, metric conventions and method names live here and only here;
every other module imports them, so a table, a figure and the engine can never disagree.
"""

from __future__ import annotations

#: OpenAI CLIP's image normalisation (RGB mean and std of its training data, on [0, 1] pixels).
OPENAI_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

#: Prompt of the fine-tuning pairs (FLYP and the paper's CMA code).
TRAIN_PROMPT = "a photo of a {}"
#: Prompt of the ID classes at test time (the CMA code's scoring prompt).
TEST_PROMPT = "The nice {}"
#: Prompts of negative-label candidates, by kind: NegLabel's nouns and adjectives (the CMA code's
#: prompts), and CSP's conjugated phrases ("striped pattern"; one of the four adjective-phrase
#: templates of CSP's code, which averages all four).
NEGLABEL_PROMPTS: dict[str, str] = {
    "noun": "The nice {}",
    "adj": "This is a {} photo",
    "csp": "a nice photo of {}",
}

#: The paper's OoD sets by group, under cmakit's keys (PAPER.md §7): OpenOOD v1.5's ImageNet
#: near / far groups and the four MOS sets. The one home of these names: the data loaders, the
#: paper profile's groups and the paper's table columns all read them from here.
PAPER_OOD_GROUPS: dict[str, tuple[str, ...]] = {
    "near": ("ssb_hard", "ninco"),
    "far": ("inaturalist", "textures", "openimage_o"),
    "mos": ("mos_inaturalist", "mos_sun", "mos_places", "mos_textures"),
}
#: MOS set key -> its name in the MOS release (``mos-<name>`` on the command line).
MOS_SET_NAMES: dict[str, str] = {
    "mos_inaturalist": "iNaturalist", "mos_sun": "SUN", "mos_places": "Places",
    "mos_textures": "Textures",
}  # fmt: skip

#: Which towers fine-tuning may move: both (the paper's recipe), the image tower or the text tower.
TOWERS: tuple[str, ...] = ("both", "image", "text")

#: Metric conventions: the paper's / MOS (ID positive) and OpenOOD v1.5's (OoD positive).
CONVENTIONS: tuple[str, ...] = ("id_positive", "ood_positive")

#: The three models compared everywhere, in display order.
METHODS: tuple[str, ...] = ("zero_shot", "flyp", "cma")
#: Short labels as in the paper's tables (``CMA_NegLabel``).
METHOD_LABELS: dict[str, str] = {"zero_shot": "ZS", "flyp": "FLYP", "cma": "CMA"}
#: Labels of figures and prose.
MODEL_LABELS: dict[str, str] = {"zero_shot": "zero-shot", "flyp": "FLYP", "cma": "CMA"}

#: Okabe & Ito's colour-blind-safe palette (Color Universal Design): the colours of every figure.
OKABE_ITO: dict[str, str] = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
}  # fmt: skip
