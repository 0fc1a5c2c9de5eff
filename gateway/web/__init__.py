"""The bastion's HTTPS endpoint: an adapter beside ``ssh/`` and ``rdp/``.

SAML sign-in for SSH logins, approver sign-in (OIDC or SAML) and approving from a
browser. It uses config, auth and the approval store; it never imports ``gateway.ssh``
or ``gateway.rdp``. Entry point: :class:`gateway.web.server.WebService`. See docs/sso.md.
"""
