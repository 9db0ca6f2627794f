"""The old name of :mod:`reidlib.runner`: ``python -m reidlib.experiments run NAME --profile P``
keeps working (``reidlib/experiments/__main__.py``); the code lives in :mod:`reidlib.runner`."""
