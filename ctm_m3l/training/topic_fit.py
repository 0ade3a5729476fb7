"""``M3LTM(topic_fit=...)``: a first fit trains the topic-word weights; the model's own fit then
keeps them fixed and trains its inference networks (and prior) against them, or, with
``topic_epochs``, trains them on in its last ``topic_epochs`` epochs.

On Multi30k the topics are most coherent under the paper's settings and the networks retrieve
best under the defaults (docs, "Topic space": "Topics from one fit, networks from another");
``topic_fit`` runs both in one ``fit``, as ``fit(topics_from=...)`` with ``topic_epochs=0`` does
with a model fitted by hand.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path

from .._validation import InvalidParameterError
from ..defaults import PAPER_TOPIC_FIT
from .checkpoint import CHECKPOINT_FILE

__all__ = ["TOPIC_FIT_DIR", "TOPIC_FIT_INHERITED", "TOPIC_FIT_FIXED", "topic_fit_settings", "check_topic_fit",
           "topics_train", "normalise_topic_fit", "run_topic_fit"]

#: Where, under ``fit``'s ``checkpoint_dir``, the first fit writes its checkpoints.
TOPIC_FIT_DIR = "topic-fit"
#: Settings the first fit takes from the model: its topics must fit this model's decoder and
#: data, and it trains with the same seed and device.
TOPIC_FIT_INHERITED = ("views", "n_components", "model_type", "random_state", "device", "torch_compile",
                       "num_data_loader_workers")
#: Settings ``topic_fit`` may not set: the inherited ones and ``topic_epochs`` (its own
#: ``topic_fit`` it may set only to None, as :data:`PAPER_TOPIC_FIT` does: the first fit is one fit).
TOPIC_FIT_FIXED = TOPIC_FIT_INHERITED + ("topic_epochs",)


def normalise_topic_fit(value):
    """``topic_fit`` as it is kept and saved: ``None``, ``"paper"`` or a plain JSON dict (tuples
    become lists), so a saved or checkpointed model compares equal to the one that wrote it."""
    if value is None or isinstance(value, str):
        return value
    return json.loads(json.dumps(dict(value), default=_plain))


def _plain(value):
    """A NumPy number (or array) as the Python number (or list) JSON can hold."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"topic_fit: {value!r} ({type(value).__name__}) is not a setting a saved model can hold")


def topic_fit_settings(estimator) -> dict | None:
    """The constructor arguments of ``estimator``'s first fit, or None without ``topic_fit``:
    M3LTM's defaults, then ``topic_fit``'s settings (``"paper"``: :data:`PAPER_TOPIC_FIT`), with
    :data:`TOPIC_FIT_INHERITED`'s and ``num_epochs`` (unless ``topic_fit`` sets it) from
    ``estimator``, and ``topic_fit=None`` (the first fit trains its topics itself)."""
    if estimator.topic_fit is None:
        return None
    given = PAPER_TOPIC_FIT if estimator.topic_fit == "paper" else estimator.topic_fit
    inherited = {name: getattr(estimator, name) for name in TOPIC_FIT_INHERITED + ("num_epochs",)}
    return {**inherited, **copy.deepcopy(given), "topic_fit": None}  # one fit: its topics train with it


def check_topic_fit(topic_fit) -> None:
    """The first fit is one fit: its settings' own ``topic_fit``, if any, is None."""
    if isinstance(topic_fit, Mapping) and topic_fit.get("topic_fit") is not None:
        raise InvalidParameterError(f"M3LTM: topic_fit's settings set topic_fit={topic_fit['topic_fit']!r}; the first "
                                    "fit trains its topics itself, so its topic_fit may only be None")


def topics_train(estimator, epoch: int) -> bool:
    """Whether the topic-word weights train in ``epoch`` (counted from 0) of ``estimator``'s fit.

    ``topic_epochs`` None: in every epoch, or in none with ``topic_fit``; N: in the first N, or,
    where they came from another fit (``topic_fit`` or ``fit(topics_from=...)``), in the last N
    of ``num_epochs``: trained on against networks that have learned them, not random ones
    (on Multi30k the first 10 epochs of a second fit take the source's NPMI from 0.14 to 0.11;
    docs, "Topic space").  A fit stopped early (``patience``) before those epochs keeps them fixed."""
    n = estimator.topic_epochs
    if n is None:
        return estimator.topic_fit is None
    if estimator.topics_source is not None or estimator.topic_fit is not None:
        return epoch >= estimator.num_epochs - n
    return epoch < n


def run_topic_fit(estimator, train, validation, topics_from, fresh: bool, resume_from, checkpoint_dir,
                  **fit_options):
    """The first fit of ``estimator.topic_fit`` (None without one), and the ``resume_from`` left
    for the model's own fit.

    It runs when the model has no network yet and ``resume_from`` holds no checkpoint of the
    model's own fit; with ``checkpoint_dir`` it checkpoints under ``checkpoint_dir/topic-fit``,
    and a ``resume_from`` folder without the model's checkpoint but with that one resumes it
    (a run killed in its first fit), then the model's own fit starts afresh."""
    if estimator.topic_fit is None:
        return None, resume_from
    if topics_from is not None:
        raise ValueError(f"this M3LTM has topic_fit={estimator.topic_fit!r}, whose first fit gives it its topics; "
                         "fit's topics_from would give them too: for topics from another model, build this one "
                         "with topic_fit=None")
    first_resume = None
    if resume_from is not None:
        own = Path(resume_from)
        if own.is_file() or (own / CHECKPOINT_FILE).exists():
            return None, resume_from  # the model's own fit was under way: its checkpoint holds the topics
        if not (own / TOPIC_FIT_DIR / CHECKPOINT_FILE).exists():
            raise FileNotFoundError(f"resume_from: {own} holds neither a checkpoint ({CHECKPOINT_FILE}) nor the "
                                    f"first fit's ({TOPIC_FIT_DIR}/{CHECKPOINT_FILE})")
        first_resume = own / TOPIC_FIT_DIR
    elif not fresh:
        return None, None  # fitted before: its topics are the first fit's already
    source = type(estimator)(**topic_fit_settings(estimator))
    source.fit(train, validation, checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir) / TOPIC_FIT_DIR,
               resume_from=first_resume, **fit_options)
    return source, None
