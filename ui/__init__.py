"""The app's shared layer between the pages and the ``pruning`` library.

Only ``app.py``, ``pages/`` and this package import Streamlit (ARCHITECTURE.md rule 1). Pages stay
thin by using what lives here:

- ``ui.page``    what every page is built on: page setup and sidebar, the run store, captions,
                 user errors as ``st.error``, links to other pages.
- ``ui.formatting``  numbers as text (percent, counts, MFLOPs, ms, times) and metrics as table
                 columns and ``st.metric`` tiles.
- ``ui.pickers`` run pickers and run titles; runs and their epochs as pandas frames.
- ``ui.report``  one run's report (status, tiles, curves, sparsities, per-layer bars, config) and
                 a method's description.
- ``ui.state``   what a browser session remembers: ids and choices, never models.
- ``ui.forms``   widgets generated from config dataclasses; RunConfig <-> URL query parameters.
- ``ui.jobs``    the job engine (no Streamlit): runs and sweeps in background threads, Stop, and
                 the server's limits on jobs (``JobLimits``).
- ``ui.live``    jobs in the app: the server's job manager, starting jobs for a visitor (a page's
                 start buttons and empty states), the live panel (progress, curves, Stop) and the
                 list of every running job.
- ``ui.charts``  plotly figure builders (no Streamlit), one module per chart family, sharing one
                 style (``ui.charts.style``).
- ``ui.masks_view``  mask snapshots as pictures, films and churn frames for the mask charts.
- ``ui.safe_text``  user text escaped for Markdown and plotly labels (``md``, ``html``).
- ``ui.store_health``  the store's check on every page: an unreadable runs.db can be moved
                 aside, damaged rows and newer config fields are reported.
"""
