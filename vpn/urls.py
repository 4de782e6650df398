from __future__ import annotations

from django.urls import path

from vpn import views

app_name = "vpn"
urlpatterns = [
    path("", views.tunnel_list, name="tunnel_list"),
    path("members/<int:pk>/<str:action>/", views.member_action, name="member_action"),
]
