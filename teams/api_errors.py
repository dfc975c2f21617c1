import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .fields import SecretDecryptionError

logger = logging.getLogger(__name__)


class Conflict(Exception):
    """A name clash: answered 409 with the field that clashed."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field
        self.message = message


def refuse_name_clash(queryset, name, what, instance=None):
    """Raise a 409 naming `what` when `queryset` already holds another object called `name`."""
    if name and queryset.filter(name=name).exclude(pk=getattr(instance, "pk", None)).exists():
        raise Conflict("name", f"{what} with this name already exists.")


def exception_handler(exc, context):
    if isinstance(exc, Conflict):
        return Response({exc.field: [exc.message]}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, IntegrityError):
        # A unique constraint lost a race that validation could not see.
        return Response({"detail": "This conflicts with an existing object."}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, SecretDecryptionError):
        logger.error("secret decryption failed: %s", exc)
        return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    return drf_exception_handler(exc, context)
