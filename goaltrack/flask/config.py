"""The ``GOALTRACK_*`` config keys of a Flask app: one per goaltrack option, read alike.

Each key is the option's environment variable, ``GOALTRACK_`` and its name in upper case
(:data:`CONFIG_DEFAULTS`; :data:`goaltrack.options.TABLE`), with the meaning it has in every
adapter; strings are converted the same way: ``"false"``, ``"3"``, ``"0.5"``,
``"package.module:hook"``. What ``init_app`` read (the config, then ``GoalTrack(**options)``,
then the environment) is kept in ``app.extensions``, never written back into ``app.config``.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from goaltrack.options import OPTIONS, raw_settings_from_env

__all__ = ["CONFIG_DEFAULTS", "config_key", "configured_values", "read_values"]

#: Every ``GOALTRACK_*`` config key the extension reads, with its default.
CONFIG_DEFAULTS: dict[str, object] = {option.env: option.default for option in OPTIONS.values()}

#: ``app.extensions`` key of the option values ``init_app`` read.
VALUES_KEY = "goaltrack.options"


def config_key(option: str) -> str:
    return OPTIONS[option].env if option in OPTIONS else f"GOALTRACK_{option.upper()}"


def read_values(app: Flask, options: Mapping[str, object]) -> dict[str, object]:
    """Option name -> value as given (not converted): *app*'s config, then *options* (given to
    ``GoalTrack``), then the ``GOALTRACK_*`` environment variables, whose names are the keys."""
    values: dict[str, object] = {
        name: value for name, value in raw_settings_from_env().items() if name not in options
    }
    values.update(options)
    values.update(
        {
            name: app.config[config_key(name)]
            for name in OPTIONS
            if app.config.get(config_key(name)) is not None
        }
    )
    return values


def configured_values(app: Flask) -> dict[str, object]:
    """The option values ``init_app`` read for *app* (read now if it has not run)."""
    values = app.extensions.get(VALUES_KEY)
    return dict(values) if values is not None else read_values(app, {})
