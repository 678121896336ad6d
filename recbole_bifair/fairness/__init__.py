"""Item-group fairness: groups, the collector, registered metrics, reports, figures, rankings.

Importing this package registers the group metrics into RecBole's evaluator, so it must be
imported before a Config that lists them is built (``recbole_bifair.setup()`` does it).
``python -m recbole_bifair.fairness --rankings=... --item_groups=...`` computes the same report,
with bootstrap intervals, from saved ranking files (``file_report.py``).
"""

from recbole_bifair.fairness.collector import FairnessCollector
from recbole_bifair.fairness.groups import ItemGroups, build_item_groups, validate_group_config, write_item_groups_csv
from recbole_bifair.fairness.metrics import register
from recbole_bifair.fairness.rankings import load_rankings, save_rankings
from recbole_bifair.fairness.report import GroupReport, end_of_run_report

register()

__all__ = [
    "FairnessCollector", "GroupReport", "ItemGroups", "build_item_groups", "end_of_run_report",
    "load_rankings", "save_rankings", "validate_group_config", "write_item_groups_csv",
]
