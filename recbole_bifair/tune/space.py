"""Search spaces in RecBole's hyper syntax, checked line by line before Ray starts.

One parameter per line, as ``recbole/trainer/hyper_tuning.py`` (``_build_space_from_file``) reads it::

    learning_rate loguniform -8,0        # exp(u), u ~ U(-8, 0): 3.4e-4 .. 1
    hidden_size choice [32,64]
    dropout_prob uniform 0.1,0.5
    n_layers quniform 1,3,1              # integer bounds and step: integers

Types and the distribution each one samples, as hyperopt (RecBole's backend) defines them:

- ``choice [v1, v2, ...]``: one of the listed Python literals (read with ``ast.literal_eval``,
  never ``eval``).
- ``uniform a,b``: uniform on [a, b].
- ``quniform a,b,q``: uniform on [a, b], rounded to a multiple of q. Integers when a, b and q are
  all written as integers (hyperopt returns 2.0 where a model needs 2).
- ``loguniform a,b``: **a and b are exponents**: the value is exp(u) with u uniform on [a, b],
  i.e. log-uniform on [e^a, e^b]. ``learning_rate loguniform -8,0`` gives 3.4e-4 .. 1. This is
  hyperopt's ``hp.loguniform``; Ray's ``tune.loguniform`` takes the bounds themselves, so the
  conversion happens here.

Blank lines and lines starting with ``#`` are skipped (RecBole skips lines of fewer than three
fields; here they are an error, since they are almost always a typo).
"""

import ast
import math
import re
from dataclasses import dataclass

import numpy as np
from ray import tune
from ray.tune.search.sample import Float, Sampler

from recbole_bifair.errors import ConfigError

TYPES = ("choice", "uniform", "quniform", "loguniform")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"[-+]?\d+")


class RoundedUniform(Sampler):
    """hyperopt's quniform: round(U(a, b) / q) * q, as RecBole users know it.

    Not Ray's ``tune.quniform``/``qrandint``: in Ray 2.6.3 both skip the rounding when q == 1
    (``Quantized.sample``), so ``quniform 1,3,1`` would give unrounded floats and ``qrandint(1, 3)``
    never 3.
    """

    def __init__(self, q, integer):
        self.q, self.integer = q, integer

    def sample(self, domain, config=None, size=1, random_state=None):
        raw = Float(domain.lower, domain.upper).uniform().sample(config, size=size, random_state=random_state)
        rounded = [float(v) for v in np.round(np.atleast_1d(raw) / self.q) * self.q]
        values = [int(round(v)) if self.integer else v for v in rounded]
        return values if size > 1 else values[0]


@dataclass(frozen=True)
class Param:
    """One searched config key: its type, its bounds or values, and the line it came from."""

    name: str
    kind: str
    values: tuple  # choice: the candidates; uniform/loguniform: (a, b); quniform: (a, b, q)
    line: int
    integer: bool = False  # quniform with integer a, b, q

    def domain(self, grid=False):
        """The Ray Tune domain; ``grid`` turns a choice into an exhaustive grid axis."""
        if self.kind == "choice":
            return tune.grid_search(list(self.values)) if grid else tune.choice(list(self.values))
        if self.kind == "uniform":
            return tune.uniform(*self.values)
        if self.kind == "quniform":
            low, high, q = self.values
            domain = Float(low, high)
            domain.set_sampler(RoundedUniform(q, self.integer))
            return domain
        low, high = self.values
        return tune.loguniform(math.exp(low), math.exp(high))

    def largest(self):
        """The largest value this parameter can take (for numeric parameters)."""
        if self.kind == "choice":
            return max(self.values)
        if self.kind == "loguniform":
            return math.exp(self.values[1])
        return self.values[1]

    def describe(self):
        if self.kind == "choice":
            return f"{self.name} choice {list(self.values)}"
        return f"{self.name} {self.kind} {','.join(str(v) for v in self.values)}"


@dataclass(frozen=True)
class SearchSpace:
    params: tuple
    source: str

    @property
    def names(self):
        return [p.name for p in self.params]

    def __getitem__(self, name):
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)

    @property
    def all_choice(self):
        return all(p.kind == "choice" for p in self.params)

    def ray_space(self, exhaustive=False):
        """``param_space`` for ``ray.tune.Tuner``: choices become grid axes when ``exhaustive``."""
        return {p.name: p.domain(grid=exhaustive) for p in self.params}

    def grid_size(self):
        return math.prod(len(p.values) for p in self.params if p.kind == "choice")


def parse_space_file(path):
    """Read a params file; any bad line raises ``ConfigError`` naming the file and the line."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise ConfigError(f"params file '{path}' cannot be read ({err.strerror}): check --params_file") from err
    return parse_space(text, source=str(path))


def parse_space(text, source="<params>"):
    params, seen = [], {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        param = _parse_line(line, number, source)
        if param.name in seen:
            raise ConfigError(
                f"params file '{source}' line {number}: '{param.name}' is already searched on line "
                f"{seen[param.name]}: keep one line per parameter"
            )
        seen[param.name] = number
        params.append(param)
    if not params:
        raise ConfigError(
            f"params file '{source}' defines no parameter: write lines like `learning_rate loguniform -8,0`"
        )
    return SearchSpace(tuple(params), source)


def _parse_line(line, number, source):
    def fail(problem):
        return ConfigError(f"params file '{source}' line {number} (`{line}`): {problem}")

    fields = line.split(None, 2)
    if len(fields) < 3:
        raise fail("expected `name type values`, e.g. `learning_rate loguniform -8,0`")
    name, kind, rest = fields
    if not _NAME.fullmatch(name):
        raise fail(f"'{name}' is not a config key name")
    if kind not in TYPES:
        raise fail(f"unknown type '{kind}': use one of {', '.join(TYPES)}")
    if kind == "choice":
        return Param(name, kind, _parse_choice(rest, fail), number)
    tokens = [t.strip() for t in rest.replace(" ", "").split(",")]
    expected = 3 if kind == "quniform" else 2
    shape = "a,b,q" if kind == "quniform" else "a,b"
    if len(tokens) != expected:
        raise fail(f"{kind} takes {shape} ({expected} numbers separated by commas)")
    numbers = []
    for token in tokens:
        try:
            value = float(token)
        except ValueError:
            raise fail(f"'{token}' is not a number")
        if not math.isfinite(value):
            raise fail(f"'{token}' is not a finite number")
        numbers.append(value)
    low, high = numbers[0], numbers[1]
    if not low < high:
        raise fail(f"the range {low:g},{high:g} is empty: write the lower bound first and make it smaller")
    integer = False
    if kind == "quniform":
        q = numbers[2]
        if q <= 0:
            raise fail(f"the step q={q:g} must be positive")
        if math.ceil(low / q) > math.floor(high / q):
            raise fail(f"no multiple of q={q:g} lies in [{low:g}, {high:g}]: use a smaller q or a wider range")
        integer = all(_INT.fullmatch(t) for t in tokens)
        if integer:
            numbers = [int(t) for t in tokens]
    return Param(name, kind, tuple(numbers), number, integer)


def _parse_choice(text, fail):
    try:
        values = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise fail("choice takes a Python list literal, e.g. [64, 128] or ['CE', 'BPR']") from None
    if not isinstance(values, (list, tuple)) or not values:
        raise fail("choice takes a non-empty list, e.g. [64, 128]")
    return tuple(_plain(v) for v in values)


def _plain(value):
    """Tuples become lists so that the chosen value can be written to YAML."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
