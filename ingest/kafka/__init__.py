"""Kafka: the local broker and the producers.

Modules:

- ``broker``: The local single-node Kafka broker (KRaft), run from Apache Kafka's Maven artifacts.
- ``producer``: Producing to Kafka with kafka-python: usage events and enrollment records.
"""
