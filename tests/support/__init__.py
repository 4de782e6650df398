"""Helpers shared by the tests: factories, fake hosts, node XML, eager Celery, a deployed site."""
