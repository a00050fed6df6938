"""Operator login in the sidebar, and the checks every write action makes.

The rules live in :mod:`dashboard.auth`; this module keeps the login state of one
browser session (``st.session_state``) and draws the login box. Pages show write
widgets only when :func:`is_operator` is true, and every write callback checks it again
(:func:`require_operator`) before it calls the service.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import auth

OPERATOR_KEY = "_operator"
THROTTLE_KEY = "_login_throttle"


def _secrets() -> dict[str, Any]:
    try:
        return st.secrets.to_dict()
    except Exception:  # no secrets.toml: Streamlit raises when secrets are read
        return {}


def _oidc_user() -> str | None:
    """The e-mail (or name) of the OIDC user when logged in and allowed to write."""
    secrets = _secrets()
    if not auth.oidc_configured(secrets):
        return None
    user = st.user
    if not user.get("is_logged_in"):
        return None
    email = user.get("email") or user.get("name") or "oidc-user"
    return (
        str(email)
        if auth.oidc_operator_allowed(str(email), auth.operator_emails(secrets))
        else None
    )


def actor() -> str | None:
    """The audit-log actor of the logged-in operator, or None when read-only."""
    operator = st.session_state.get(OPERATOR_KEY)
    if operator:
        return str(operator)
    oidc = _oidc_user()
    return auth.actor_name(oidc) if oidc else None


def is_operator() -> bool:
    """True when this browser session may change experiments."""
    return actor() is not None


def require_operator() -> str:
    """The actor, or :class:`PermissionError` when nobody is logged in."""
    who = actor()
    if who is None:
        raise PermissionError("log in as an operator to change experiments")
    return who


def _throttle() -> auth.LoginThrottle:
    return st.session_state.setdefault(THROTTLE_KEY, auth.LoginThrottle())


def _login() -> None:
    password = st.session_state.get("login_password", "")
    name = st.session_state.get("login_name", "")
    st.session_state["login_password"] = ""
    throttle = _throttle()
    wait = throttle.locked_for()
    if wait > 0:
        st.session_state["_login_error"] = f"Too many wrong passwords; try again in {wait:.0f} s."
    elif throttle.attempt(password, auth.operator_password(_secrets())):
        st.session_state[OPERATOR_KEY] = auth.actor_name(name)
        st.session_state.pop("_login_error", None)
    else:
        st.session_state["_login_error"] = "Wrong operator password."


def _logout() -> None:
    st.session_state.pop(OPERATOR_KEY, None)


def sidebar_login() -> None:
    """The operator box: who is logged in and a log-out button, or the login form."""
    st.subheader("Operator")
    who = actor()
    if who is not None:
        st.success(f"Logged in as **{who}**: you can change experiments.")
        if st.session_state.get(OPERATOR_KEY):
            st.button("Log out", key="logout", on_click=_logout)
        else:
            st.button("Log out", key="logout", on_click=st.logout)
        return
    st.caption("Read-only. Log in as an operator to create, re-split, promote or stop.")
    secrets = _secrets()
    oidc_on = auth.oidc_configured(secrets)
    if oidc_on and st.user.get("is_logged_in"):
        email = st.user.get("email") or st.user.get("name")
        st.warning(f"Signed in as {email}, who is not on the operator list: read-only.")
        st.button("Sign out", key="logout_sso", on_click=st.logout)
    password_on = auth.operator_password(secrets) is not None
    if password_on:
        with st.form("login_form", clear_on_submit=False, border=False):
            st.text_input("Your name (for the audit log)", key="login_name")
            st.text_input("Operator password", type="password", key="login_password")
            st.form_submit_button("Log in", key="login_submit", on_click=_login)
        error = st.session_state.pop("_login_error", None)
        if error:
            st.error(error)
    if oidc_on and not st.user.get("is_logged_in"):
        provider = auth.oidc_provider(secrets)
        st.button(
            "Log in with single sign-on",
            key="login_sso",
            on_click=st.login,
            args=(provider,) if provider else (),
        )
    if not password_on and not oidc_on:
        st.info(
            f"Writing is disabled: set {auth.PASSWORD_ENV} (or `operator_password` in "
            "Streamlit secrets), or configure `[auth]` for single sign-on."
        )
