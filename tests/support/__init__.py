"""Test harness: real PostgreSQL clusters, real Kafka brokers, worker processes."""
