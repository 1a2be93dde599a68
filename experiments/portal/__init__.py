"""The web portal (``preuve serve``): reports, portfolio and usage pages.

Modules:

- ``app``: The FastAPI application: sign-in, sessions, routes, templates.
- ``text``: The portal's words, in French (the default) and English.
- ``views``: What the portal shows, assembled from the registry, the run records and the stores.
"""
