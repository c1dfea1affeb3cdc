"""Pruning Explorer's library: models, data, masks, schedules, methods, training, store, metrics.

The app (``app.py``, ``pages/``, ``ui/``) and the CLI (``python -m pruning``) are thin layers over
this package; it never imports Streamlit. The single entry point for a run is
``pruning.session.run_session(config, store, on_event=None, should_stop=None)``.
"""
from pruning.config import ConfigError, RunConfig

__all__ = ["ConfigError", "RunConfig"]
