"""Fixtures that start real servers (SeaweedFS S3, MLflow) on free loopback ports."""
