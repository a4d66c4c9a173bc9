"""goaltrack's template tag library: ``{% load goaltrack %}``."""
