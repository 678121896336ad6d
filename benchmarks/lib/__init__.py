"""What the benchmark scripts compute, as importable modules (``from benchmarks.lib import runs``).

The fairness benchmark, bottom up: ``paths`` (where things live), ``methods`` (method files and
sweep points), ``protocol`` (the shared protocol, budgets, profiles), ``cache`` (when a finished
run is the planned one), ``archive`` (finished runs kept in the repository), ``runs`` (one run,
reused, resumed or launched), ``stats`` (paired bootstrap and curve statistics), ``tables`` (rows,
Markdown and CSV), ``plots`` (figures). The other scripts' parts: ``selection`` (the selection
rules), ``candidates`` (the backbone and recipe searches), ``bifair_search`` (the Ray Tune search),
``seq_accuracy``, ``cost`` with ``cost_child`` (the measured process) and ``synthetic_data``,
``distributed``, ``eval_speed``, ``embedding_speed``, ``anomaly``."""
