from django.apps import AppConfig


class MingaConfig(AppConfig):
    name = "minga"
    verbose_name = "Minga"
