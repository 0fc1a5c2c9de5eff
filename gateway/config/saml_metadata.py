"""Reading a SAML identity provider's metadata file far enough for ``config check``
(``gateway.auth.saml`` uses the same helpers at run time). Parsed with defusedxml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from defusedxml import ElementTree as SafeET

NS_DS = "http://www.w3.org/2000/09/xmldsig#"
NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"


def idp_metadata_problem(path: Path, entity_id: str = "") -> str | None:
    """Why ``path`` is not usable IdP metadata (for ``config check``), or None."""
    try:
        root = SafeET.fromstring(path.read_bytes())
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    except Exception as exc:  # noqa: BLE001 - defusedxml raises several types for hostile XML
        return f"{path} is not valid XML: {exc}"
    idps = _metadata_idps(root)
    if not idps:
        return f"{path} describes no identity provider (no IDPSSODescriptor)"
    if entity_id and entity_id not in idps:
        return (f"{path} has no IdP {entity_id!r} (it has: "
                f"{', '.join(sorted(idps))})")
    if not entity_id and len(idps) > 1:
        return f"{path} has several IdPs; choose one with saml.idp_entity_id"
    ent = idps[entity_id or next(iter(idps))]
    if not ent.findall(f".//{{{NS_MD}}}SingleSignOnService"):
        return f"{path}: the IdP has no SingleSignOnService"
    certs = [kd for kd in ent.iter(f"{{{NS_MD}}}KeyDescriptor")
             if kd.get("use") in (None, "signing")
             and kd.find(f".//{{{NS_DS}}}X509Certificate") is not None]
    if not certs:
        return f"{path}: the IdP has no signing certificate (KeyDescriptor)"
    return None


def _metadata_idps(root: Any) -> dict[str, Any]:
    ents = [root] if root.tag == f"{{{NS_MD}}}EntityDescriptor" else \
        list(root.iter(f"{{{NS_MD}}}EntityDescriptor"))
    return {e.get("entityID", ""): e for e in ents
            if e.find(f"{{{NS_MD}}}IDPSSODescriptor") is not None}



__all__ = ["NS_DS", "NS_MD", "_metadata_idps", "idp_metadata_problem"]
