"""The notebook pipeline: run configuration and profiles, products keyed by their inputs,
stages, results, the runner, publishing, and the command line's embed/evaluate steps."""
