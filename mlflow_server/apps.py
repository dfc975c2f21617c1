from django.apps import AppConfig


class MlflowServerConfig(AppConfig):
    name = "mlflow_server"
    verbose_name = "MLflow client"
    default_auto_field = "django.db.models.BigAutoField"
