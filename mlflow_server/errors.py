"""MLflow's error shape: `{"error_code", "message"}` with the HTTP status its client expects."""

from django.http import JsonResponse

# The status MLflow's server gives each code (mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS), except
# INVALID_STATE: MLflow answers it 500, which its own client retries for minutes; it is a refusal.
STATUS = {
    "INVALID_PARAMETER_VALUE": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "INVALID_STATE": 400,
    "BAD_REQUEST": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "INTERNAL_ERROR": 500,
}


class MlflowError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message

    def response(self):
        response = JsonResponse({"error_code": self.code, "message": self.message}, status=STATUS[self.code])
        if self.code == "UNAUTHENTICATED":
            response["WWW-Authenticate"] = 'Bearer realm="tripline", Basic realm="tripline"'
        return response


def invalid(message):
    return MlflowError("INVALID_PARAMETER_VALUE", message)


def missing(what):
    return MlflowError("RESOURCE_DOES_NOT_EXIST", what)


def exists(what):
    return MlflowError("RESOURCE_ALREADY_EXISTS", what)
