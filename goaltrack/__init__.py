"""goaltrack: server-side custom goals and payments for DataFast, Faurya and Flowsery, never
slowing a request.

Public names only; each lives in the module named in its docstring.
"""

from goaltrack.config import Problem, configuration_problems
from goaltrack.cookies import Visitor, visitor_from_cookies
from goaltrack.delivery import DeliveryResult, InvalidConfiguration, Outcome
from goaltrack.goals import Goal, InvalidGoal
from goaltrack.payments import InvalidPayment, Payment
from goaltrack.providers import PROVIDERS, Provider, get_provider
from goaltrack.script_tag import script_tag
from goaltrack.tracker import (
    GoalTracker,
    TrackerOptions,
    configure,
    flush,
    get_tracker,
    track,
    track_payment,
)
from goaltrack.transports import Stats

__version__ = "0.1.0"

__all__ = [
    "PROVIDERS",
    "DeliveryResult",
    "Goal",
    "GoalTracker",
    "InvalidConfiguration",
    "InvalidGoal",
    "InvalidPayment",
    "Outcome",
    "Payment",
    "Problem",
    "Provider",
    "Stats",
    "TrackerOptions",
    "Visitor",
    "__version__",
    "configuration_problems",
    "configure",
    "flush",
    "get_provider",
    "get_tracker",
    "script_tag",
    "track",
    "track_payment",
    "visitor_from_cookies",
]
