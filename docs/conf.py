"""Sphinx configuration of vif-qos's documentation: ``./dev docs`` builds it into
docs/_build/html, warnings as errors."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))        # vif_qos from this checkout
sys.path.insert(0, os.path.join(HERE, "_ext"))

from vif_qos import __version__  # noqa: E402

project = "vif-qos"
author = "vif-qos maintainers"
copyright = "vif-qos maintainers"
version = release = __version__
language = "en"

extensions = ["manpages"]
exclude_patterns = ["_build"]
# Commands and options are written as typed: "--config" stays two hyphens.
smartquotes = False
highlight_language = "none"

html_theme = "alabaster"
html_title = f"vif-qos {__version__}"
html_show_sourcelink = False
