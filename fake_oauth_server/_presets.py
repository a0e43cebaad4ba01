"""Named policies: the refresh behaviour of real servers (docs/fake-oauth-server.md).

Each preset follows the server's documented default where one exists, with
rotation turned on where the server makes it optional (otherwise there
would be nothing to race).  Where a server lets you widen the window, the
preset keeps the default and the knob is left to ``Policy.replace``.

=========== ========================================================================
preset      what it models (and where the figures come from)
=========== ========================================================================
``openai``  ChatGPT / Codex: strict rotation, no window; a reused token gets 401
            ``refresh_token_reused`` and later refreshes of the grant get
            ``refresh_token_invalidated`` (openai/codex#10332), so reuse
            revokes the family.  A refresh also returns a JWT ``id_token`` with
            the ``https://api.openai.com/auth`` claim the Codex CLI reads.
``rfc9700`` RFC 9700 §4.14.2 / OAuth 2.1: rotation, no window, reuse revokes the
            token and the grant; 400 ``invalid_grant``.
``auth0``   Auth0 rotation: reuse interval ("leeway", default 0 s) for the previous
            token only, each reuse inside it minting a new pair; reuse outside it
            revokes the family; 403 "Unknown or invalid refresh token."; inactivity
            15 days, absolute 30 days; 200 live grants per user and application.
``okta``    Okta rotation: grace period 0–60 s (default 30) for the previous token;
            reuse outside it invalidates the most recent token and every access
            token of the grant; 400 "The refresh token is invalid or expired.";
            refresh tokens idle out after 7 days.
``keycloak`` Keycloak with "Revoke Refresh Token" on: ``refreshTokenMaxReuse``
            (default 0) counts reuses of the current token; an older token gets
            "Stale token", a reuse over the cap "Maximum allowed refresh token reuse
            exceeded", and either detaches the client session; access 5 min, SSO
            session idle 30 min, max 10 h.
``hydra``   Ory Hydra / fosite: rotation, grace period off by default (≤ 5 min, or
            longer with a count cap) for any spent token, minting a new pair; reuse
            after it revokes the whole chain; a refresh revokes the access token
            issued with the presented refresh token; refresh tokens live 720 h.
``entra``   Microsoft Entra ID: every refresh returns a new refresh token but the
            old ones stay valid for their lifetime (an unbounded window over any
            token, minting); 90 days of inactivity ends the grant.
``google``  Google: no rotation, long-lived refresh token, 3599 s access tokens,
            100 live grants per account and client.
=========== ========================================================================
"""

from __future__ import annotations

from ._policy import ErrorDialect, Policy, ReuseResponse, ReuseScope

_DAY = 86400.0

PRESET_POLICIES: dict[str, Policy] = {
    "openai": Policy(
        rotation=True,
        revoke_family_on_reuse=True,
        access_token_lifetime=3600.0,
        dialect=ErrorDialect.OPENAI,
        id_tokens=True,
    ),
    "rfc9700": Policy(
        rotation=True,
        revoke_family_on_reuse=True,
        dialect=ErrorDialect.RFC6749,
    ),
    "auth0": Policy(
        rotation=True,
        revoke_family_on_reuse=True,
        reuse_window=0.0,
        reuse_scope=ReuseScope.PREVIOUS,
        reuse_response=ReuseResponse.MINT,
        access_token_lifetime=_DAY,
        refresh_idle_lifetime=15 * _DAY,
        refresh_absolute_lifetime=30 * _DAY,
        max_grants_per_user=200,
        dialect=ErrorDialect.AUTH0,
    ),
    "okta": Policy(
        rotation=True,
        revoke_family_on_reuse=True,
        reuse_window=30.0,
        reuse_scope=ReuseScope.PREVIOUS,
        reuse_response=ReuseResponse.MINT,
        access_token_lifetime=3600.0,
        refresh_idle_lifetime=7 * _DAY,
        dialect=ErrorDialect.OKTA,
    ),
    "keycloak": Policy(
        rotation=True,
        revoke_family_on_reuse=True,
        reuse_window=None,
        reuse_scope=ReuseScope.PREVIOUS,
        reuse_response=ReuseResponse.MINT,
        max_reuse=0,
        access_token_lifetime=300.0,
        refresh_idle_lifetime=1800.0,
        refresh_absolute_lifetime=36000.0,
        dialect=ErrorDialect.KEYCLOAK,
    ),
    "hydra": Policy(
        rotation=True,
        revoke_family_on_reuse=True,
        reuse_window=0.0,
        reuse_scope=ReuseScope.ANY,
        reuse_response=ReuseResponse.MINT,
        revoke_access_on_refresh=True,
        access_token_lifetime=3600.0,
        refresh_token_lifetime=720 * 3600.0,
        dialect=ErrorDialect.HYDRA,
    ),
    "entra": Policy(
        rotation=True,
        revoke_family_on_reuse=False,
        reuse_window=None,
        reuse_scope=ReuseScope.ANY,
        reuse_response=ReuseResponse.MINT,
        access_token_lifetime=3600.0,
        refresh_idle_lifetime=90 * _DAY,
        dialect=ErrorDialect.ENTRA,
    ),
    "google": Policy(
        rotation=False,
        revoke_family_on_reuse=False,
        access_token_lifetime=3599.0,
        max_grants_per_user=100,
        dialect=ErrorDialect.GOOGLE,
    ),
}

#: Names ``Policy.preset`` accepts.
PRESETS: tuple[str, ...] = tuple(PRESET_POLICIES)


def preset_name(policy: Policy) -> str | None:
    """The name of the preset equal to ``policy``, if any."""
    for name, known in PRESET_POLICIES.items():
        if known == policy:
            return name
    return None
