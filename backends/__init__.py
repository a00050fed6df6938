"""Model backends: ``fal.App`` classes serving text-to-image pipelines.

Deploy (from the repository root)::

    fal deploy backends/model_v1.py::ModelV1 --app-name model-v1
    fal deploy backends/model_v2.py::ModelV2 --app-name model-v2

Importing this package is cheap: it imports nothing (torch and diffusers are loaded in
each app's ``setup``).
"""
