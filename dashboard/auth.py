"""Operator access for the dashboard: who may change experiments.

Reading is open; every write (create, start, change weights, promote, stop) needs an
operator. Two ways to become one:

* **Password.** The shared operator password comes from the environment variable
  ``ABPLATFORM_OPERATOR_PASSWORD`` or, if that is unset, from Streamlit secrets
  (``operator_password`` at the top level or in an ``[abplatform]`` table). A candidate
  is compared in constant time (:func:`hmac.compare_digest` on UTF-8 bytes). With no
  password configured, password login is off.
* **OIDC** through ``st.login`` when Streamlit's ``[auth]`` secrets are configured. A
  logged-in user is an operator if no allow-list is configured, or if their e-mail is on
  it (``ABPLATFORM_OPERATOR_EMAILS``, comma-separated, or ``operator_emails`` in
  secrets, a list or a comma-separated string).

Repeated wrong passwords lock the login of that browser session for a while
(:class:`LoginThrottle`). This module has no Streamlit dependency: pass the secrets as
a mapping.
"""

from __future__ import annotations

import hmac
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PASSWORD_ENV = "ABPLATFORM_OPERATOR_PASSWORD"
EMAILS_ENV = "ABPLATFORM_OPERATOR_EMAILS"
SECRETS_SECTION = "abplatform"
ACTOR_PREFIX = "dashboard"
MAX_NAME_LENGTH = 60


def _secret(secrets: Mapping[str, Any] | None, key: str) -> Any:
    if not secrets:
        return None
    if key in secrets:
        return secrets[key]
    section = secrets.get(SECRETS_SECTION)
    if isinstance(section, Mapping):
        return section.get(key)
    return None


def operator_password(
    secrets: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The configured operator password, or None when password login is off.

    The environment variable wins over secrets; an empty value counts as unset.
    """
    env = os.environ if environ is None else environ
    value = env.get(PASSWORD_ENV) or _secret(secrets, "operator_password")
    return str(value) if value else None


def check_password(candidate: str, expected: str | None) -> bool:
    """True when ``candidate`` equals the configured password (constant-time compare).

    Always False when no password is configured or the candidate is empty.
    """
    if not expected or not candidate:
        return False
    return hmac.compare_digest(candidate.encode("utf-8"), expected.encode("utf-8"))


def oidc_configured(secrets: Mapping[str, Any] | None) -> bool:
    """True when Streamlit's ``[auth]`` secrets allow ``st.login``: ``redirect_uri`` and
    ``cookie_secret``, plus ``client_id`` either directly or in a provider table."""
    auth = (secrets or {}).get("auth")
    if not isinstance(auth, Mapping):
        return False
    if not auth.get("redirect_uri") or not auth.get("cookie_secret"):
        return False
    if auth.get("client_id"):
        return True
    return any(isinstance(v, Mapping) and v.get("client_id") for v in auth.values())


def oidc_provider(secrets: Mapping[str, Any] | None) -> str | None:
    """The provider to pass to ``st.login``: None for the default ``[auth]`` table, else
    the first ``[auth.<name>]`` table that has a ``client_id``."""
    auth = (secrets or {}).get("auth")
    if not isinstance(auth, Mapping) or auth.get("client_id"):
        return None
    return next((k for k, v in auth.items() if isinstance(v, Mapping) and v.get("client_id")), None)


def operator_emails(
    secrets: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> frozenset[str]:
    """The OIDC allow-list (lower-cased e-mails); empty means every logged-in user."""
    env = os.environ if environ is None else environ
    raw: Any = env.get(EMAILS_ENV) or _secret(secrets, "operator_emails") or ()
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return frozenset(str(x).strip().lower() for x in items if str(x).strip())


def oidc_operator_allowed(email: str | None, allowed: frozenset[str]) -> bool:
    """True when an OIDC user with ``email`` may write (no allow-list, or listed)."""
    if not allowed:
        return True
    return bool(email) and email.strip().lower() in allowed


def actor_name(name: str | None) -> str:
    """The audit-log actor for an operator: ``dashboard:<name>`` (``operator`` if blank).

    Keeps letters, digits and ``@ . _ + -``, at most 60 characters.
    """
    clean = re.sub(r"[^A-Za-z0-9@._+-]", "", (name or "").strip())[:MAX_NAME_LENGTH]
    return f"{ACTOR_PREFIX}:{clean or 'operator'}"


@dataclass
class LoginThrottle:
    """Locks password login after ``max_failures`` wrong attempts for ``lockout_s``.

    Keep one per browser session. ``clock`` is injectable for tests.
    """

    max_failures: int = 5
    lockout_s: float = 30.0
    failures: int = 0
    locked_until: float = 0.0
    clock: Any = field(default=time.monotonic, repr=False)

    def locked_for(self) -> float:
        """Seconds until login is allowed again (0 when it is allowed now)."""
        return max(self.locked_until - self.clock(), 0.0)

    def attempt(self, candidate: str, expected: str | None) -> bool:
        """Check a password unless locked; count failures and lock after too many."""
        if self.locked_for() > 0:
            return False
        if check_password(candidate, expected):
            self.failures = 0
            return True
        self.failures += 1
        if self.failures >= self.max_failures:
            self.failures = 0
            self.locked_until = self.clock() + self.lockout_s
        return False


__all__ = [
    "EMAILS_ENV",
    "PASSWORD_ENV",
    "LoginThrottle",
    "actor_name",
    "check_password",
    "oidc_configured",
    "oidc_operator_allowed",
    "oidc_provider",
    "operator_emails",
    "operator_password",
]
