"""The deployable worker: ``celery -A workers.app worker``."""
