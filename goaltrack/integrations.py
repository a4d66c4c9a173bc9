"""The names this module had before the adapter contract moved into the core's modules.

Kept so that imports written against it keep working; new code imports from
:mod:`goaltrack.context`, :mod:`goaltrack.bots` and :mod:`goaltrack.decorator` (or from its
adapter: ``goaltrack.django.current_visitor``, ...).
"""

from __future__ import annotations

from goaltrack.bots import is_bot
from goaltrack.context import VisitorSource, bind_visitor, current_visitor, unbind_visitor
from goaltrack.decorator import MetadataArg, is_success, precheck_goal_name

__all__ = [
    "MetadataArg",
    "VisitorSource",
    "bind_visitor",
    "current_visitor",
    "is_bot",
    "is_success",
    "precheck_goal_name",
    "unbind_visitor",
]
