"""What the tests share (not test modules): keys, ports, waiting, browsers, servers and apps.

- :mod:`keys`: the API keys and accounts the tests use, one per provider.
- :mod:`ports`: free loopback ports, safe when several pytest workers pick at once.
- :mod:`waiting`: :func:`~tests.support.waiting.wait_until`, a condition with a deadline.
- :mod:`browser`: the User-Agents and the clients that act as a visitor's browser.
- :mod:`servers`, :mod:`examples`, :mod:`threaded`: real servers in processes or threads.
- :mod:`hostile_api`: a loopback API of the tests' own that misbehaves on purpose.
- :mod:`fault_apps`, :mod:`hooks`, :mod:`celery_app`, ``apps/``, ``django_app/``: what those
  servers and the ``*_HOOK`` options load by name.
"""
