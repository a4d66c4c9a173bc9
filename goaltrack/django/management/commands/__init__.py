"""goaltrack_check, goaltrack_send and goaltrack_outbox (see goaltrack.django.management)."""
