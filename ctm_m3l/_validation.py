"""Declarative parameter checks, in the manner of scikit-learn's ``_parameter_constraints``.

A class lists what each constructor argument may be::

    _parameter_constraints = {"n_components": [Interval(int, 1, None)], "solver": [Options("adam", "sgd")]}

and calls ``validate_params(self._parameter_constraints, values, owner)``: the first argument
that satisfies none of its constraints raises :class:`InvalidParameterError` naming the
owner, the argument, what it may be and what it was.  One error type for every bad setting
(a ``ValueError`` and a ``TypeError``, so code catching either keeps working); each constraint
also makes an example of a value it refuses, from which the tests are generated.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

__all__ = ["InvalidParameterError", "NotFittedError", "Interval", "Options", "Boolean", "NoneValue", "Names",
           "Strings", "Satisfies", "PositiveInts", "WeightMap", "SettingsMap", "InstanceOf", "validate_params", "check_int",
           "check_is_fitted", "check_views"]


class InvalidParameterError(ValueError, TypeError):
    """A setting outside what its parameter accepts."""


class NotFittedError(RuntimeError):
    """A method that needs a fitted estimator was called before ``fit`` (or ``load``)."""


class _Constraint:
    def is_satisfied_by(self, value: Any) -> bool:
        raise NotImplementedError

    def problem(self, value: Any) -> str | None:
        """A more precise reason than "must be ..." for some refused values (None: none)."""
        return None

    def invalid_example(self) -> Any:
        """A value this constraint refuses (for the generated tests)."""
        raise NotImplementedError


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


class Interval(_Constraint):
    """A number of ``kind`` (``int`` or ``float``; a float interval takes ints too) in
    ``[left, right]``, either end open with ``closed`` ("both", "left", "right", "neither")
    or unbounded with None."""

    def __init__(self, kind: type, left: float | None, right: float | None, closed: str = "both") -> None:
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def is_satisfied_by(self, value: Any) -> bool:
        if self.kind is int:
            if not _is_int(value):
                return False
        elif isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            return False
        if self.left is not None and (value < self.left or (value == self.left and self.closed in ("right", "neither"))):
            return False
        return self.right is None or not (value > self.right or (value == self.right and self.closed in ("left", "neither")))

    def invalid_example(self) -> Any:
        if self.left is None and self.right is None:
            return "not-a-number"
        if self.left is not None:
            return self.left - 1 if self.kind is int else self.left - 0.5
        return self.right + 1

    def __str__(self) -> str:
        kind = "an int" if self.kind is int else "a number"
        if self.left is None and self.right is None:
            return kind
        if self.left is not None and self.right is None:
            return f"{kind} {'>=' if self.closed in ('both', 'left') else '>'} {self.left}"
        if self.left is None:
            return f"{kind} {'<=' if self.closed in ('both', 'right') else '<'} {self.right}"
        return (f"{kind} in {'[' if self.closed in ('both', 'left') else '('}{self.left}, {self.right}"
                f"{']' if self.closed in ('both', 'right') else ')'}")


class Options(_Constraint):
    """One of the given values (strings, as a rule)."""

    def __init__(self, *values: Any) -> None:
        self.values = tuple(values)

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, type(self.values[0])) and value in self.values

    def invalid_example(self) -> Any:
        return "not-an-option"

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


class Boolean(_Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, bool)

    def invalid_example(self) -> Any:
        return "yes"

    def __str__(self) -> str:
        return "a bool"


class NoneValue(_Constraint):
    def is_satisfied_by(self, value: Any) -> bool:
        return value is None

    def invalid_example(self) -> Any:
        return None  # never used alone

    def __str__(self) -> str:
        return "None"


class InstanceOf(_Constraint):
    def __init__(self, kind: type | tuple[type, ...], description: str) -> None:
        self.kind, self.description = kind, description

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, self.kind)

    def invalid_example(self) -> Any:
        return object()

    def __str__(self) -> str:
        return self.description


class Names(_Constraint):
    """A non-empty list of distinct non-empty strings (``min_length`` of them at least)."""

    def __init__(self, what: str = "view names", min_length: int = 1) -> None:
        self.what, self.min_length = what, min_length

    def is_satisfied_by(self, value: Any) -> bool:
        return (isinstance(value, Sequence) and not isinstance(value, str) and len(value) >= self.min_length
                and all(isinstance(v, str) and v for v in value) and len(set(value)) == len(value))

    def problem(self, value: Any) -> str | None:
        if isinstance(value, Sequence) and not isinstance(value, str) and len(set(map(str, value))) < len(value):
            return f"has a repeated name: {list(value)}"
        return None

    def invalid_example(self) -> Any:
        return "en"

    def __str__(self) -> str:
        least = f"a list of at least {self.min_length} " if self.min_length > 1 else "a non-empty list of "
        return f"{least}{self.what} (distinct non-empty strings), e.g. ['en', 'de', 'image']"


class Strings(_Constraint):
    """A list (or other iterable, not a string) of strings."""

    def is_satisfied_by(self, value: Any) -> bool:
        return (not isinstance(value, (str, bytes)) and isinstance(value, Iterable)
                and all(isinstance(v, str) for v in value))

    def invalid_example(self) -> Any:
        return [1, 2]

    def __str__(self) -> str:
        return "a list of strings"


class Satisfies(_Constraint):
    """Any value ``test(value)`` accepts; ``description`` says what that is."""

    def __init__(self, test, description: str, invalid: Any) -> None:
        self.test, self.description, self.invalid = test, description, invalid

    def is_satisfied_by(self, value: Any) -> bool:
        return bool(self.test(value))

    def invalid_example(self) -> Any:
        return self.invalid

    def __str__(self) -> str:
        return self.description


class PositiveInts(_Constraint):
    """A non-empty tuple or list of ints >= 1 (layer sizes)."""

    def is_satisfied_by(self, value: Any) -> bool:
        return (isinstance(value, (tuple, list)) and len(value) > 0
                and all(_is_int(v) and v > 0 for v in value))

    def invalid_example(self) -> Any:
        return (100, 0)

    def __str__(self) -> str:
        return "a non-empty tuple of positive ints"


class WeightMap(_Constraint):
    """A mapping from some of ``keys`` to finite numbers >= 0."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, Mapping) and all(
            k in self.keys and isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for k, v in value.items())

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return None
        unknown = sorted(set(value) - set(self.keys), key=str)
        if unknown:
            return f"has unknown key(s) {unknown}; known: {sorted(self.keys)}"
        for k, v in value.items():
            if not (isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 0):
                return f"[{k!r}] must be a finite number >= 0, got {v!r}"
        return None

    def invalid_example(self) -> Any:
        return {self.keys[0]: -1.0}

    def __str__(self) -> str:
        return f"a dict from some of {list(self.keys)} to finite numbers >= 0"


class SettingsMap(_Constraint):
    """A mapping of some of an estimator's settings to values each of ``constraints`` allows;
    the names in ``fixed`` may not be set (they are the estimator's own)."""

    def __init__(self, constraints: Mapping[str, list], fixed: Sequence[str], what: str) -> None:
        self.constraints, self.fixed, self.what = constraints, tuple(fixed), what

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, Mapping) and self.problem(value) is None

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return None
        fixed = sorted((k for k in value if k in self.fixed), key=str)
        if fixed:
            return f"may not set {fixed}: {self.what} takes them from this model"
        unknown = sorted((k for k in value if k not in self.constraints), key=str)
        if unknown:
            return f"has unknown setting(s) {unknown}; known: {sorted(set(self.constraints) - set(self.fixed))}"
        try:
            validate_params({k: self.constraints[k] for k in value}, value, None)
        except InvalidParameterError as err:
            return f"({self.what}'s settings): {err}"
        return None

    def invalid_example(self) -> Any:
        return {self.fixed[0]: None} if self.fixed else {"": None}

    def __str__(self) -> str:
        return f"a dict of {self.what}'s settings"


def validate_params(constraints: Mapping[str, list], params: Mapping[str, Any], owner: str | None) -> None:
    """Raise :class:`InvalidParameterError` for the first of ``params`` that satisfies none of
    its constraints, with the most precise reason a constraint gives (an unknown key, a
    repeated name), else what the parameter may be."""
    prefix = f"{owner}: " if owner else ""
    for name, allowed in constraints.items():
        value = params[name]
        if any(constraint.is_satisfied_by(value) for constraint in allowed):
            continue
        for constraint in allowed:
            problem = constraint.problem(value)
            if problem:
                joiner = "" if problem.startswith("[") else " "
                raise InvalidParameterError(f"{prefix}{name}{joiner}{problem}")
        else:
            problems = [str(constraint) for constraint in allowed]
            shown = repr(value)
            raise InvalidParameterError(f"{prefix}{name} must be {' or '.join(problems)}, "
                                        f"got {shown if len(shown) <= 80 else shown[:77] + '...'}")


def check_is_fitted(estimator: Any, attribute: str, what: str | None = None) -> None:
    """Raise :class:`NotFittedError` when ``estimator.<attribute>`` is None."""
    if getattr(estimator, attribute, None) is None:
        name = what or type(estimator).__name__
        raise NotFittedError(f"this {name} is not fitted yet: call fit(dataset) first"
                             + (" or load(path)" if hasattr(type(estimator), "load") else ""))


def check_views(dataset: Any, views: Sequence[str], owner: str) -> None:
    """Raise ``ValueError`` naming the views of ``views`` that ``dataset`` lacks."""
    missing = [v for v in views if v not in dataset.view_names]
    if missing:
        raise ValueError(f"{owner}: view(s) {missing} are not in the dataset (its views: {dataset.view_names})")


def check_int(name: str, value: Any, minimum: int, owner: str | None = None) -> None:
    """One int argument of a method (``k``, ``n_samples``...) checked like a constructor's."""
    validate_params({name: [Interval(int, minimum, None)]}, {name: value}, owner)
