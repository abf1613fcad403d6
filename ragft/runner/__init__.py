"""The runner: runs an experiment's pipelines over its task in a run folder (training,
prediction, caching and resume), and returns the typed `Report`."""
