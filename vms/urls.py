from __future__ import annotations

from django.urls import path

from vms import views, views_jobs

app_name = "vms"
urlpatterns = [
    path("", views.vm_list, name="vm_list"),
    path("refresh/", views.refresh_all, name="refresh_all"),
    path("jobs/", views_jobs.job_list, name="job_list"),
    path("jobs/<int:pk>/", views_jobs.job_detail, name="job_detail"),
    path("jobs/<int:pk>/status/", views_jobs.job_status, name="job_status"),
    path("jobs/<int:pk>/abort/", views_jobs.job_abort, name="job_abort"),
]
