"""Account rules: pure functions, no Flask and no database."""

from __future__ import annotations

import unicodedata
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 256  # argon2 hashes any length; this only stops absurd request bodies
DISPLAY_NAME_MAX_LENGTH = 80
EMAIL_MAX_LENGTH = 254

_COMMON_PASSWORDS_FILE = Path(__file__).with_name("common-passwords.txt")


class InvalidEmail(ValueError):
    """The text is not an email address a reader could receive mail at."""


def normalise_email(raw: str) -> str:
    """Return the canonical form of an email address, used for storage and lookups.

    The domain is put in its ASCII-compatible lower-case form by email-validator, and the whole
    address is lower-cased: no mail provider a reader is likely to use treats the local part as
    case-sensitive, and two accounts differing only in case are always a mistake.
    """
    text = raw.strip()
    if not text or len(text) > EMAIL_MAX_LENGTH or "\x00" in text:
        raise InvalidEmail("Enter a valid email address.")
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail("Enter a valid email address.") from exc
    return result.normalized.lower()


@cache
def common_passwords() -> frozenset[str]:
    """The most common passwords (8 characters or more) from public breach corpora."""
    lines = _COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip())


def password_problem(password: str, email: str | None = None) -> str | None:
    """Why a new password is not acceptable, in words a reader understands; None if it is fine.

    Any character is allowed and nothing is truncated: long passphrases are welcome.
    """
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"Use at least {PASSWORD_MIN_LENGTH} characters."
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"Use at most {PASSWORD_MAX_LENGTH} characters."
    if "\x00" in password:
        return "The password contains a character that cannot be used."
    folded = password.strip().lower()
    if folded in common_passwords():
        return "This password is one of the most common ones; choose something harder to guess."
    if email and folded == email.strip().lower():
        return "Your password must not be your email address."
    return None


def clean_display_name(raw: str) -> str:
    """Strip and tidy a display name; raise ValueError with a reader's message if unusable."""
    name = unicodedata.normalize("NFC", " ".join(raw.split()))
    if not name:
        raise ValueError("Enter the name you want us to use.")
    if len(name) > DISPLAY_NAME_MAX_LENGTH:
        raise ValueError(f"Use at most {DISPLAY_NAME_MAX_LENGTH} characters.")
    # Control, format (zero-width, bidi overrides), surrogate, private and unassigned characters.
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in name):
        raise ValueError("The name contains characters that cannot be shown.")
    if not any(unicodedata.category(ch)[0] in "LNSP" for ch in name):
        raise ValueError("Enter the name you want us to use.")
    return name


def safe_next(target: str | None) -> str | None:
    """Return ``target`` if it is a path on this site, else None.

    Refuses absolute URLs, scheme-relative ``//host`` URLs, backslash tricks that browsers read as
    ``//host``, ``javascript:`` and other schemes, and control characters.
    """
    if not target or len(target) > 2000:
        return None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in target) or "\\" in target:
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
