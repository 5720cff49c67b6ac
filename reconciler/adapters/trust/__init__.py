"""Supply chain, the I/O (README "Supply chain"): trust roots from a directory, commit signatures checked by git,
a small OCI registry client, cosign signatures, vulnerability reports, and the artifact gate that joins them.

    roots.py    load_trust_roots(DIR) -> TrustRoots (raises TrustRootsError naming every bad file)
    keys.py     the formats: allowed_signers lines, PEM artifact keys and their key ids (pure)
    commits.py  CommitVerifier(roots).verify / .verify_revision; signing_config(--signing-key)
    oci.py      RegistryClient: resolve, manifest, blob, referrers, fetch; failures are values
    cosign.py   verify_image_signature (cosign's `sha256-<hex>.sig` layout)
    reports.py  read_scan_report (OCI referrer or scan.reportUrl)
    gate.py     check_artifact: preflight, signature, scan -> ArtifactAllowed | ArtifactBlocked

The judgement that needs no I/O (verdict values, the simple-signing payload check, the scan gate) is in
`reconciler.core.trust`.
"""
