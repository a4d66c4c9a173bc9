"""The ``GOALTRACK_*`` config keys of a Flask app: one per goaltrack option, read alike.

Each key is ``GOALTRACK_`` and the option's name in upper case (:data:`CONFIG_DEFAULTS`), with
the meaning it has in every adapter (:mod:`goaltrack.adapter`); strings (from the environment)
are converted: ``"false"``, ``"3"``, ``"0.5"``, ``"package.module:hook"``.
"""

from __future__ import annotations

from flask import Flask

from goaltrack.adapter import OPTIONS, AdapterSettings, read_settings

__all__ = ["CONFIG_DEFAULTS", "config_key", "settings_of"]

#: Every ``GOALTRACK_*`` config key the extension reads, with its default.
CONFIG_DEFAULTS: dict[str, object] = {f"GOALTRACK_{name.upper()}": v for name, v in OPTIONS.items()}


def config_key(option: str) -> str:
    return f"GOALTRACK_{option.upper()}"


def settings_of(app: Flask) -> AdapterSettings:
    """*app*'s ``GOALTRACK_*`` config, converted and checked (raises for a bad value)."""
    return read_settings({name: app.config.get(config_key(name)) for name in OPTIONS}, config_key)
