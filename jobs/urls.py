from __future__ import annotations

from django.urls import path

from jobs import views

app_name = "jobs"
urlpatterns = [
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/<int:pk>/", views.job_detail, name="job_detail"),
    path("jobs/<int:pk>/status/", views.job_status, name="job_status"),
    path("jobs/<int:pk>/abort/", views.job_abort, name="job_abort"),
    # The kind's extra actions (registry.JobAction.name), e.g. /jobs/7/postcopy/.
    path("jobs/<int:pk>/<slug:action>/", views.job_action, name="job_action"),
]
