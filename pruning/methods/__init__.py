"""Registered pruning methods (``METHODS``) and how a RunConfig selects one.

Importing this package registers every method: the criterion-based ones (magnitude, random,
snip, grasp, synflow, taylor; see ``criteria.py`` and ``scheduled.py``) and the papers' methods
(``aswl``, ``ispasp``, ``ssc``, ``unification``).
"""
from __future__ import annotations

from pruning.methods.base import (METHODS, method_config, reads_target_sparsity,  # noqa: F401
                                  target_text)


def build_method(config):
    """Instantiate the registered method for a validated RunConfig."""
    return METHODS.get(config.method)(config, method_config(config))


# Registration happens on import; order here is the order users see.
from pruning.methods import scheduled  # noqa: E402,F401
from pruning.methods import aswl, unification  # noqa: E402,F401
from pruning.methods import ispasp, ssc  # noqa: E402,F401
