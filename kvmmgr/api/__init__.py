"""The REST API (``/api/v1/``): Django REST framework over the same services as the
pages and ``manage.py``; the services check roles and write the audit log."""
