"""Enrollment: académies enroll classes (or pupils), Preuve checks and randomises them.

Modules:

- ``api``: HTTP API of enrollment (académies enroll and withdraw; EdTech companies read arms).
- ``balance``: Balance of the arms right after enrollment (counts, standardized differences).
- ``classes``: Enrollment: académies enroll classes; the platform checks them and assigns the arms.
- ``files``: The enrollment file: what a protocol asks of it, and the checks of each row.
- ``pupils``: Enrollment of pupils for learner-randomised protocols (``population.unit: learner``).
- ``randomisation``: Stratified permuted blocks, from the protocol and the enrollment order.
"""
