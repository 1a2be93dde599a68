"""Privacy operations: retention and purge, erasure, and the researchers' export.

Modules:

- ``export``: Data export for researchers and national studies (pseudonymised tables, codebook).
- ``retention``: Retention and erasure: row-level data leaves when the protocol says.
"""
