"""Which forge a delivery verifies as, by table; the GitHub row is the example GitHub's documentation gives for
validating deliveries (README "HTTP API")."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from reconciler.api.webhooks import GITEA, GITHUB, GITLAB, Forge, verified_forge

SECRET = "It's a Secret to Everybody"
BODY = b"Hello, World!"
GITHUB_EXAMPLE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
HEX = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()

CASES: dict[str, tuple[dict[str, str], Forge | None]] = {
    "GitHub, its documented example": ({"x-hub-signature-256": GITHUB_EXAMPLE}, GITHUB),
    "GitHub, upper-case hex": ({"x-hub-signature-256": GITHUB_EXAMPLE.upper().replace("SHA256", "sha256")}, GITHUB),
    "GitHub, without the sha256= prefix": ({"x-hub-signature-256": HEX}, None),
    "GitHub, the legacy SHA-1 header alone": ({"x-hub-signature": "sha1=" + HEX[:40]}, None),
    "Gitea": ({"x-gitea-signature": HEX}, GITEA),
    "Forgejo": ({"x-forgejo-signature": HEX, "x-gitea-signature": HEX}, GITEA),
    "Forgejo's bad signature is not rescued by Gitea's": ({"x-forgejo-signature": "0" * 64,
                                                            "x-gitea-signature": HEX}, None),
    "Gitea's bad signature is not rescued by GitHub's": ({"x-gitea-signature": "0" * 64,
                                                          "x-hub-signature-256": GITHUB_EXAMPLE}, None),
    "GitLab": ({"x-gitlab-token": SECRET}, GITLAB),
    "GitLab, another token": ({"x-gitlab-token": SECRET + " "}, None),
    "nothing signed": ({"x-github-event": "push"}, None),
}


@pytest.mark.parametrize(("headers", "forge"), CASES.values(), ids=CASES.keys())
def test_verified_forge(headers: dict[str, str], forge: Forge | None) -> None:
    assert verified_forge(headers, BODY, SECRET) == forge
