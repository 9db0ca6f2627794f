"""``python -m reidlib.experiments``: the runner's CLI under its old name (:mod:`reidlib.runner.__main__`)."""
import reidlib.runner.__main__  # noqa: F401  (running it is the point)
