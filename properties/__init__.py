"""Default config files of recbole_bifair, installed as the package ``recbole_bifair.properties``."""
