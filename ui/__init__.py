"""The app's shared layer between the pages and the ``pruning`` library.

Only ``app.py``, ``pages/`` and this package import Streamlit (ARCHITECTURE.md rule 1). Pages stay
thin by using what lives here:

- ``ui.common``  page setup, the run store, run pickers, empty states, captions, user errors,
                 run/epoch frames and number formatting.
- ``ui.state``   what a browser session remembers: ids and choices, never models.
- ``ui.forms``   widgets generated from config dataclasses; RunConfig <-> URL query parameters.
- ``ui.jobs``    the job engine (no Streamlit): runs and sweeps in background threads, Stop, and
                 the server's limits on jobs (``JobLimits``).
- ``ui.live``    jobs in the app: the server's job manager, starting jobs for a visitor, the live
                 panel (progress, curves, Stop) and the list of every running job.
- ``ui.charts``  plotly figure builders from pandas frames, in one consistent style.
- ``ui.safe_text``  user text escaped for Markdown and plotly labels (``md``, ``html``).
- ``ui.store_health``  the store's check on every page: an unreadable runs.db can be moved
                 aside, damaged rows and newer config fields are reported.
"""
