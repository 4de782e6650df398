"""One form per action: the input schema the page, the manage.py command and the API build."""
