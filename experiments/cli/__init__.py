"""The ``preuve`` command line: one module per command group, assembled in :mod:`.app`.

Modules:

- ``app``: The ``preuve`` command line.
- ``console``: What every entry point does the same way: logging set-up and user-facing errors.
- ``enrollment``: ``preuve enroll``: an académie enrolls classes (or pupils) into an experiment.
- ``outcomes``: ``preuve outcomes import``: assessment results from another platform into the store.
- ``privacy``: ``preuve purge``, ``preuve erase`` and ``preuve export``: data leaves when it should.
- ``protocol``: ``preuve protocol ...``: validate, power, register, amend, show, export, advance.
- ``reference``: The README's settings table and command reference, generated from the code.
- ``services``: Long-running services that are not ingest: scheduler, portal, and the demo.
- ``tokens``: ``preuve token ...``: API tokens for the gateway, the enrollment API and the portal.
"""
