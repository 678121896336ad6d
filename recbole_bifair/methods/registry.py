"""The table of fairness methods by name (the values of ``fair_method``).

Built-in methods register themselves when ``recbole_bifair.methods.catalog`` imports them; a
method written outside the package registers the same way, before the config is built::

    from recbole_bifair.methods.base import FairMethod
    from recbole_bifair.methods.registry import register_method

    @register_method
    class MyMethod(FairMethod):
        name = "my_method"
        ...
"""

from recbole_bifair.errors import ConfigError

_METHODS = {}


def register_method(cls):
    """Class decorator: make ``cls`` (a ``FairMethod`` subclass) the method ``cls.name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{cls.__name__}.name must be a lower-case identifier (the value of fair_method), got {name!r}")
    known = _METHODS.get(name)
    if known is not None and known is not cls and known.__qualname__ != cls.__qualname__:
        raise ValueError(f"fair_method '{name}' is taken by {known.__module__}.{known.__qualname__}")
    _METHODS[name] = cls
    return cls


def registered():
    """``{name: class}`` of every method registered so far."""
    return dict(_METHODS)


def lookup(name):
    """The class registered as ``name``; ConfigError listing the names otherwise."""
    if name not in _METHODS:
        raise ConfigError(f"fair_method '{name}' is unknown; use one of {', '.join(sorted(_METHODS))} "
                          f"(a method of your own must be registered with register_method before the run)")
    return _METHODS[name]
