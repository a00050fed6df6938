"""The operator dashboard (Streamlit): ``streamlit run dashboard/app.py``.

Pages: overview, experiment (results, change split, promote or stop), create
experiment, audit log. The pages hold no SQL: they call :mod:`abplatform.service.experiments`,
:mod:`abplatform.service.reports` and :mod:`abplatform.service.reports`.
"""
