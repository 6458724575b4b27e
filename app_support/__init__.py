"""Support code for the Streamlit app (``app.py`` and ``pages/``), kept out of ``srem_core``.

- ``analysis``: pure pandas/numpy helpers that turn a run's tables into what a page shows.
- ``figures``: pure plotly figure builders.
- ``loading``: run discovery and the cached loaders (``st.cache_resource`` / ``st.cache_data``).
- ``widgets``: small Streamlit rendering helpers shared by several pages.

``analysis`` and ``figures`` never import streamlit, so their unit tests run without it.
"""
