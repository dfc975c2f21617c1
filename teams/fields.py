from cryptography.fernet import InvalidToken
from encrypted_fields.fields import EncryptedTextField


class SecretDecryptionError(Exception):
    """A stored secret could not be decrypted with the configured SECRET_KEY/SALT_KEY."""


class GuardedEncryptedTextField(EncryptedTextField):
    """An encrypted text column that refuses to hand back ciphertext.

    django-fernet-encrypted-fields returns the stored ciphertext unchanged when no key can
    decrypt it (after SECRET_KEY or SALT_KEY changed). A ciphertext used as a bearer token
    would be sent to a third party, so a failed decryption raises instead.
    """

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        try:
            return self.f.decrypt(value.encode("utf-8")).decode("utf-8")
        except InvalidToken:
            raise SecretDecryptionError(
                "a stored secret cannot be decrypted: SECRET_KEY or SALT_KEY changed "
                "(add the old value to SECRET_KEY_FALLBACKS or SALT_KEY to rotate)"
            ) from None
