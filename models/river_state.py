"""Pickled state of a wrapper around a River model, readable across river and opsmon upgrades.

The River model is pickled as bytes beside the wrapper's state and the versions it was written by: a model
pickled by another river version (Rust-backed statistics) may not load, and must not stop a worker restoring
its tables. A state that cannot be restored as it was is relearned by the caller, with a warning.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

import river

_log = logging.getLogger(__name__)


def dump_with_model(attributes: dict[str, Any], key: str, state_version: int) -> dict[str, Any]:
    """``attributes`` with the River model under ``key`` as bytes, and the versions writing them."""
    state = dict(attributes)
    state[key] = pickle.dumps(state[key])
    return {"state_version": state_version, "river_version": river.__version__, **state}


def load_model(state: dict[str, Any], key: str, state_version: int, what: str) -> tuple[Any, tuple]:
    """The River model under ``key`` (None when it must be relearned), and the versions that wrote ``state``.

    The version keys are taken out of ``state``.
    """
    versions = (state.pop("state_version", None), state.pop("river_version", None))
    if versions != (state_version, river.__version__):
        _log.warning("%s state from opsmon state %s / river %s, this code has %s / %s: learning restarts",
                     what, *versions, state_version, river.__version__)
        return None, versions
    try:
        return pickle.loads(state[key]), versions
    except Exception:  # noqa: BLE001 - any unreadable model relearns: a worker restoring its tables must start
        _log.warning("%s state unreadable: learning restarts", what, exc_info=True)
        return None, versions
