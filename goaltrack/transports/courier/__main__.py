"""``python -m goaltrack.transports.courier``: the courier process (see :mod:`.child`)."""

from goaltrack.transports.courier.child import main

main()
