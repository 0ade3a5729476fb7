"""Every constructor's checks come from its constraint table: one refused example per
constraint, the one error type, messages that name the owner and the argument."""
import inspect

import pytest

from ctm_m3l import M3LTM, ImageView, TextView
from ctm_m3l._validation import Interval, InvalidParameterError, NoneValue, Options, check_int, check_is_fitted, validate_params
from ctm_m3l.baselines import PLTM, KDBaseline, MCSEAligner, ZeroShotBaseline

# Each class with a table, the arguments it needs, and how its messages start.
CLASSES = {
    M3LTM: ({"views": ["en"]}, "M3LTM"),
    MCSEAligner: ({"views": ["en", "de"]}, "MCSEAligner"),
    PLTM: ({"languages": ["en", "de"]}, "PLTM"),
    ZeroShotBaseline: ({"train_view": "en", "views": ["en", "de"]}, "ZeroShotBaseline"),
    KDBaseline: ({"views": ["en", "de"]}, "KDBaseline"),
    TextView: ({"name": "en"}, "view 'en'"),
    ImageView: ({"name": "image"}, "view 'image'"),
}


def _refused_examples():
    for cls in CLASSES:
        for name, constraints in cls._parameter_constraints.items():
            for constraint in constraints:
                if isinstance(constraint, NoneValue):
                    continue
                bad = constraint.invalid_example()
                if not any(c.is_satisfied_by(bad) for c in constraints):
                    shown = repr(bad)
                    if shown.startswith("<"):  # an object's address: its type, for ids stable across processes
                        shown = type(bad).__name__
                    yield pytest.param(cls, name, bad, id=f"{cls.__name__}-{name}={shown}")


@pytest.mark.parametrize("cls,name,bad", list(_refused_examples()))
def test_every_constraint_refuses_its_example(cls, name, bad):
    required, owner = CLASSES[cls]
    with pytest.raises(InvalidParameterError, match=rf"^{owner}: {name}[ \[]") as caught:
        cls(**{**required, name: bad})
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, TypeError)  # either may be caught


@pytest.mark.parametrize("cls", list(CLASSES), ids=lambda c: c.__name__)
def test_every_table_names_constructor_arguments_and_accepts_the_defaults(cls):
    required, _ = CLASSES[cls]
    arguments = set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert set(cls._parameter_constraints) <= arguments, set(cls._parameter_constraints) - arguments
    cls(**required)  # the defaults satisfy the table


def test_m3ltm_checks_every_argument_but_the_device_in_its_table():
    arguments = set(inspect.signature(M3LTM.__init__).parameters) - {"self"}
    assert arguments - set(M3LTM._parameter_constraints) == {"device"}  # torch checks devices


@pytest.mark.parametrize("value,ok", [(0, False), (1, True), (2.5, True), (3, True), (3.5, False),
                                      (True, False), (float("nan"), False), ("1", False)])
def test_interval_bounds_types_and_nan(value, ok):
    assert Interval(float, 1, 3).is_satisfied_by(value) is ok


def test_open_ends_and_int_intervals():
    assert not Interval(float, 0, None, closed="neither").is_satisfied_by(0)
    assert Interval(float, 0, 1, closed="left").is_satisfied_by(0)
    assert not Interval(float, 0, 1, closed="left").is_satisfied_by(1)
    assert not Interval(int, 1, None).is_satisfied_by(2.0)
    assert str(Interval(float, 0, 1, closed="left")) == "a number in [0, 1)"


def test_messages_list_what_is_allowed_and_what_was_given():
    with pytest.raises(InvalidParameterError, match=r"^Thing: mode must be one of 'a', 'b', got 'c'$"):
        validate_params({"mode": [Options("a", "b")]}, {"mode": "c"}, "Thing")
    with pytest.raises(InvalidParameterError, match=r"^k must be an int >= 1, got 0$"):
        check_int("k", 0, 1)
    long = "x" * 200
    with pytest.raises(InvalidParameterError, match=r"got 'x+\.\.\.$"):
        validate_params({"mode": [Options("a")]}, {"mode": long}, None)


def test_not_fitted_is_one_error_type_for_every_system():
    for system in (M3LTM(views=["en"]), PLTM(["en"]), ZeroShotBaseline("en", ["en"]), KDBaseline(["en", "de"])):
        with pytest.raises(RuntimeError, match="is not fitted yet"):
            system.get_topic_lists()
    with pytest.raises(RuntimeError, match="MCSEAligner is not fitted yet"):
        check_is_fitted(MCSEAligner(["en", "de"]), "heads")
