"""``python -m recbole_bifair.fairness --rankings=... --item_groups=...``: see ``file_report.py``."""

from recbole_bifair.fairness.file_report import console_main

console_main()
