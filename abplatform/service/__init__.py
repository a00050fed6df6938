"""Application services: experiment commands and reads, reports, imports.

The CLI and the dashboard call these functions and never the store directly.
"""
