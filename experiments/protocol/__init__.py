"""The protocol language: what a researcher declares, checks, powers and pre-registers.

Modules:

- ``checks``: The meaning checks of the protocol language, beyond types.
- ``language``: The protocol language: pydantic models, the loader, and the canonical hash.
- ``power``: From a protocol's ``power:`` section to PowerUp! designs, one per contrast.
- ``preregistration``: A registered protocol as a pre-registration document (Markdown, for OSF).
- ``source``: Reading and writing protocol YAML, and finding where a field sits in the file.
- ``vocabulary``: Official French school vocabularies used by the protocol language.
"""
