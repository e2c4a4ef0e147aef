"""The notebook pipeline: run configuration and profiles, products keyed by their inputs,
stages, results, the runner, publishing, and the command line's embed/evaluate steps."""

import warnings

# Libraries imported by the notebooks (huggingface_hub through open_clip) import tqdm.auto,
# which warns when ipywidgets is absent; cmakit's own progress bars are plain text bars.
warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")
