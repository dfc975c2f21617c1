from django.core.validators import RegexValidator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

# Teams, projects, registries and collections are addressed by name in URLs.
validate_slug_name = RegexValidator(
    NAME_PATTERN, "Use letters, digits, '-', '_' and '.', starting with a letter or digit."
)
validate_secret_name = RegexValidator(r"^[A-Za-z0-9_]+$", "Use letters, digits and '_' only.")
