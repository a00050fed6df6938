"""The ``abplatform`` command line (an edge): commands and their rich rendering."""
