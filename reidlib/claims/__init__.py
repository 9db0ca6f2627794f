"""What the papers claim and what our measurements say about it.

* :mod:`.verdicts`: claims as comparisons of a table's rows, and their verdicts;
* :mod:`.stats`: bootstrap intervals and the verdict rule;
* :mod:`.per_query`: the per-query (per-image) arrays claims are checked on;
* :mod:`.paper`: the papers' published numbers;
* :mod:`.checks`: the invariants every executed page must satisfy.
"""
