"""The built-in fairness methods, registered, and the method of a run.

Importing this module registers ``none``, ``ips``, ``groupdro``, ``varreg``, ``logit_adjust`` and
``bifair``; methods registered from outside the package (``registry.register_method``) are found
the same way.
"""

import importlib
import importlib.util
import os
import sys

from recbole_bifair.errors import ConfigError
from recbole_bifair.methods import bifair, groupdro, ips, logit_adjust, none, varreg  # noqa: F401  (registration)
from recbole_bifair.methods.registry import lookup, registered

BUILT_IN = ("none", "ips", "groupdro", "varreg", "logit_adjust", "bifair")


def method_name(config):
    """``fair_method`` of the run (``~``: none)."""
    name = config["fair_method"]
    return "none" if name is None else name


def build_method(config):
    """The run's method object (``FairMethod``), its keys checked."""
    return lookup(method_name(config))(config)


def available_methods():
    return sorted(registered())


def import_method_modules(modules):
    """Import the modules of ``method_modules`` (module names, or paths of ``.py`` files), whose
    ``register_method`` calls add methods of your own; each once. ConfigError naming the entry."""
    if modules is None:
        return
    for entry in [modules] if isinstance(modules, str) else modules:
        try:
            if str(entry).endswith(".py"):
                path = os.path.abspath(entry)
                name = "bifair_user_method_" + os.path.splitext(os.path.basename(path))[0]
                if name in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or not os.path.isfile(path):
                    raise FileNotFoundError(f"no such file: {path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
            else:
                importlib.import_module(entry)
        except ConfigError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of user code, named with the key
            raise ConfigError(f"method_modules: '{entry}' could not be imported ({type(err).__name__}: {err}); give "
                              f"an importable module name or the path of a .py file that calls register_method") from None

