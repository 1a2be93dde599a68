"""Kafka: the local broker, the one place clients are built, topics, principals and ACLs.

Modules:

- ``broker``: The local single-node Kafka broker (KRaft), secured (SASL_SSL, ACLs), run
  from Apache Kafka's Maven artifacts.
- ``clients``: Every kafka-python and aiokafka client, built with the ``kafka.security``
  settings, each acting for a principal.
- ``principals``: The Kafka users of Preuve's services.
- ``topics``: Every topic declared once (name, partitions, configuration); creating them.
- ``access``: The ACLs of each principal; an EdTech's user, topic and ACL.
- ``producer``: Producing usage events and enrollment records.
"""
