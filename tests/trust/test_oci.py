"""The OCI client against the real registry: digests from bytes, tags that move, a registry that goes down and
comes back, lying answers, the referrers API and its fallback, bearer-token authentication."""

from __future__ import annotations

import logging

import pytest

from reconciler.adapters.trust.oci import (
    DOCKER_HUB,
    Manifest,
    RegistryClient,
    RegistryFailure,
    Repository,
    parse_challenge,
    parse_repository,
)
from reconciler.core.spec import RegistrySettings, SecretRef
from tests.trust.conftest import client_for
from tests.trust.proxy import Faults, proxy
from tests.trust.registry import REPORT_TYPE, Registry, digest_of, trivy_report


def resolved(found: Manifest | RegistryFailure) -> Manifest:
    assert isinstance(found, Manifest), found
    return found


def failed(found: object) -> RegistryFailure:
    assert isinstance(found, RegistryFailure), found
    return found


def test_a_tag_resolves_to_the_digest_of_the_bytes_served(registry: Registry, client: RegistryClient) -> None:
    pushed = registry.push_image("plugins/billing", "1.5.0")
    repo = Repository(registry.host, "plugins/billing")
    manifest = resolved(client.resolve(repo, "1.5.0"))
    assert manifest.digest == pushed == digest_of(manifest.data)
    assert manifest.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert resolved(client.manifest(repo, pushed)).data == manifest.data
    layer = manifest.layers[0]
    assert digest_of(client.blob(repo, layer.digest)) == layer.digest  # type: ignore[arg-type]


def test_a_missing_tag_or_repository_is_not_found_naming_the_reference(registry: Registry,
                                                                       client: RegistryClient) -> None:
    registry.push_image("plugins/known", "1.0.0")
    missing = failed(client.resolve(Repository(registry.host, "plugins/known"), "9.9.9"))
    assert missing.kind == "not_found"
    assert missing.message == f"{registry.host}/plugins/known:9.9.9: not found (MANIFEST_UNKNOWN)"
    assert failed(client.resolve(Repository(registry.host, "plugins/nobody"), "1.0.0")).kind == "not_found"
    unknown_blob = failed(client.blob(Repository(registry.host, "plugins/known"), "sha256:" + "0" * 64))
    assert unknown_blob.kind == "not_found"


def test_a_moved_tag_resolves_to_the_new_digest_while_the_pinned_one_still_reads(registry: Registry,
                                                                                  client: RegistryClient) -> None:
    repo = Repository(registry.host, "plugins/moving")
    pinned = registry.push_image("plugins/moving", "2.0.0", content="first build")
    moved = registry.push_image("plugins/moving", "2.0.0", content="rebuilt")
    assert moved != pinned
    assert resolved(client.resolve(repo, "2.0.0")).digest == moved
    assert resolved(client.manifest(repo, pinned)).digest == pinned


def test_a_registry_that_is_down_is_unreachable_then_answers_when_back(own_registry: Registry) -> None:
    pinned = own_registry.push_image("plugins/billing", "1.5.0")
    client = client_for(own_registry, timeout=3)
    repo = Repository(own_registry.host, "plugins/billing")
    own_registry.stop()

    down = failed(client.resolve(repo, "1.5.0"))
    assert down.kind == "unreachable"
    assert down.message == f"{own_registry.host}/plugins/billing:1.5.0: Connection refused"

    own_registry.start()
    assert resolved(client.resolve(repo, "1.5.0")).digest == pinned


def test_bytes_that_do_not_hash_to_the_digest_are_refused(registry: Registry) -> None:
    pushed = registry.push_image("plugins/lying", "1.0.0")
    with proxy(registry.url, Faults(corrupt=True)) as host:
        client = RegistryClient([RegistrySettings(host=host, insecure=True)], env={})
        repo = Repository(host, "plugins/lying")
        by_tag = failed(client.resolve(repo, "1.0.0"))
        assert by_tag.kind == "digest_mismatch"
        assert by_tag.message.startswith(f"{host}/plugins/lying:1.0.0: the registry says {pushed}, its bytes are ")
        by_digest = failed(client.manifest(repo, pushed))
        assert by_digest.kind == "digest_mismatch"
        assert by_digest.message.startswith(f"{host}/plugins/lying@{pushed}: the registry served bytes of ")


def test_referrers_come_from_the_tag_index_where_the_registry_has_no_referrers_api(
        registry: Registry, client: RegistryClient) -> None:
    digest = registry.push_image("plugins/scanned", "1.0.0")
    repo = Repository(registry.host, "plugins/scanned")
    assert client.referrers(repo, digest, REPORT_TYPE) == []
    report = registry.attach_report("plugins/scanned", digest, trivy_report([]))
    found = client.referrers(repo, digest, REPORT_TYPE)
    assert isinstance(found, list) and [d.digest for d in found] == [report]
    assert client.referrers(repo, digest, "application/vnd.example.sbom") == []


def test_referrers_come_from_the_referrers_api_where_the_registry_has_it(registry: Registry) -> None:
    digest = registry.push_image("plugins/scanned-api", "1.0.0")
    report = registry.attach_report("plugins/scanned-api", digest, trivy_report([]))
    faults = Faults(referrers_api=True)
    with proxy(registry.url, faults) as host:
        client = RegistryClient([RegistrySettings(host=host, insecure=True)], env={})
        found = client.referrers(Repository(host, "plugins/scanned-api"), digest, REPORT_TYPE)
    assert isinstance(found, list) and [d.digest for d in found] == [report]
    assert any(r.startswith(f"GET /v2/plugins/scanned-api/referrers/{digest}") for r in faults.requests)
    assert not any(digest.replace(":", "-") in r for r in faults.requests)  # no fallback needed


def test_a_bearer_challenge_is_answered_with_a_token_for_the_credentials_read_at_use(
        registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    pushed = registry.push_image("plugins/private", "1.0.0")
    faults = Faults(bearer=("ci", "s3cret-pass"))
    caplog.set_level(logging.DEBUG)
    with proxy(registry.url, faults) as host:
        settings = RegistrySettings(host=host, insecure=True, username=SecretRef(env="REG_USER"),
                                    password=SecretRef(env="REG_PASS"))
        anonymous = RegistryClient([RegistrySettings(host=host, insecure=True)], env={})
        denied = failed(anonymous.resolve(Repository(host, "plugins/private"), "1.0.0"))
        wrong = RegistryClient([settings], env={"REG_USER": "ci", "REG_PASS": "wrong-pass"})
        refused = failed(wrong.resolve(Repository(host, "plugins/private"), "1.0.0"))
        client = RegistryClient([settings], env={"REG_USER": "ci", "REG_PASS": "s3cret-pass"})
        first = resolved(client.resolve(Repository(host, "plugins/private"), "1.0.0"))
        again = resolved(client.resolve(Repository(host, "plugins/private"), "1.0.0"))
        unset = failed(RegistryClient([settings], env={}).resolve(Repository(host, "plugins/private"), "1.0.0"))
    assert first.digest == again.digest == pushed
    assert [r for r in faults.requests if r.startswith("GET /token")] == ["GET /token?scope=repository%3A" \
        "plugins%2Fprivate%3Apull&service=test-registry", "GET /token?scope=repository%3Aplugins%2Fprivate%3Apull" \
        "&service=test-registry Basic", "GET /token?scope=repository%3Aplugins%2Fprivate%3Apull&service=" \
        "test-registry Basic"]  # anonymous, wrong, right; the token is then reused
    assert denied.kind == refused.kind == "denied"
    assert refused.message == f"{host}/plugins/private:1.0.0: the token service answered 401 without a token"
    assert unset.message == f"{host}/plugins/private:1.0.0: the credentials for {host} cannot be read: " \
                            f"environment variable REG_USER is not set"
    for text in (denied.message, refused.message, unset.message, caplog.text):
        assert "s3cret" not in text and "wrong-pass" not in text


def test_plain_http_is_used_only_for_a_loopback_registry_marked_insecure() -> None:
    with pytest.raises(ValueError, match=r"insecure .* only for a loopback registry"):
        RegistrySettings(host="registry.example.com", insecure=True)
    client = RegistryClient([], env={})
    refused = failed(client.fetch("http://scans.example.com/report.json"))
    assert refused.kind == "invalid" and "only https" in refused.message


@pytest.mark.parametrize(("image", "registry", "name"), [
    ("registry.example.com/plugins/billing", "registry.example.com", "plugins/billing"),
    ("registry.example.com:5000/plugins/billing:1.5.0", "registry.example.com:5000", "plugins/billing"),
    ("localhost/billing@sha256:" + "a" * 64, "localhost", "billing"),
    ("billing", DOCKER_HUB, "library/billing"),
    ("team/billing", DOCKER_HUB, "team/billing"),
    ("docker.io/team/billing", DOCKER_HUB, "team/billing"),
])
def test_image_references_name_their_registry_and_repository(image: str, registry: str, name: str) -> None:
    assert parse_repository(image) == Repository(registry, name)


def test_an_image_reference_in_upper_case_is_refused() -> None:
    assert "is not an image reference" in str(parse_repository("registry.example.com/Plugins/Billing"))


def test_challenges_are_read_with_their_parameters() -> None:
    assert parse_challenge('Bearer realm="https://auth.example.com/token",service="registry.example.com",'
                           'scope="repository:a/b:pull"') == (
        "bearer", {"realm": "https://auth.example.com/token", "service": "registry.example.com",
                   "scope": "repository:a/b:pull"})
    assert parse_challenge('Basic realm="basic-realm"') == ("basic", {"realm": "basic-realm"})
