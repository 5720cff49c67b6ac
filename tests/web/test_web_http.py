"""The web view's app under uvicorn on a loopback port, read with a plain HTTP client: the pages read fully
without JavaScript, bad input is a 404 page or an error panel, `/events` says when the record changed, the
assets ship in the package, and the app mounts inside another Starlette app (README "Web view")."""

from __future__ import annotations

import html as html_text
import http.client
import json
import re
import urllib.error
import urllib.request
from dataclasses import replace

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from reconciler.core.model import Phase
from reconciler.core.report import render_report
from reconciler.web.app import HERE, create_app
from reconciler.web.record import Commit, MemoryRecordSource
from tests.conftest import wait_for
from tests.web.records import GATED_POLICY, T0, make_fleet, progressing, serving

FLEET = make_fleet({"billing": "1.6.0", "auth": "2.0.0", "legacy": "1.0.0"}, policy="gated")
assert "approval: true" in GATED_POLICY


def get(url: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode("utf-8"), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8"), dict(err.headers)


def text_of(html: str) -> str:
    """What a person sees: the page without its tags and the text only screen readers say, whitespace folded."""
    shown = re.sub(r'<span class="visually-hidden">[^<]*</span>', " ", html)
    return " ".join(html_text.unescape(re.sub(r"<[^>]+>", " ", shown)).split())


@pytest.fixture
def source() -> MemoryRecordSource:
    awaiting = replace(progressing(), phase=Phase.AWAITING_APPROVAL, reason="batch all awaits approval",
                       policy="gated")
    finished = replace(progressing("auth"), phase=Phase.SUCCEEDED, target_version="2.0.0", from_version="1.9.0",
                       rollout_id="f00dfeed01", reason="2.0.0 rolled out to 8 instance(s) <script>x</script>",
                       finished=T0.replace(minute=5))
    source = MemoryRecordSource(source="test record")
    source.publish(
        fleet=FLEET, states={"billing": awaiting, "auth": finished},
        unreadable={"legacy": "status/legacy.yaml: unreadable status, not valid YAML (line 3: mapping values are "
                              "not allowed here)"},
        reports={"reports/auth/2.0.0-f00dfeed01.md": render_report(finished)},
        timelines={"billing": (
            Commit("b" * 40, T0.replace(second=20), "rollback", "canary", "a1b2c3d4e5", "alice",
                   "billing 1.6.0: rollback asked"),
            Commit("a" * 40, T0, "start", None, "a1b2c3d4e5", "Alice Ops", "billing 1.6.0: rollout begins"))},
        head="c0ffee" * 6 + "abcd")
    return source


def test_the_fleet_page_reads_fully_without_javascript(source: MemoryRecordSource) -> None:
    with serving(create_app(source)) as base:
        status, html, headers = get(base + "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    page = text_of(html)
    assert "billing 1.5.0 → 1.6.0" in page and "✋ AwaitingApproval" in page
    assert "batch 2 of 3: wave-1 (Baking, 3 instance(s))" in page
    assert '<progress id="batches-billing" max="3" value="1">1 of 3 batches passed</progress>' in html
    assert '<progress id="instances-billing" max="8" value="4">4 of 8 instances done</progress>' in html
    assert "An approval : batch all awaits approval grayops approve billing --batch all" in page
    assert "auth 1.9.0 → 2.0.0" in page and "✓ Succeeded" in page
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x</script>" not in html
    assert '<meta http-equiv="refresh" content="30">' in html  # refreshes itself without JavaScript
    assert '<label for="batches-billing">Batches</label>' in html
    assert re.search(r'<main id="content"[^>]*>', html) and "<nav aria-label=\"Main\">" in html
    assert "default-src 'none'" in headers["content-security-policy"]


def test_a_malformed_status_file_is_an_error_panel_naming_it(source: MemoryRecordSource) -> None:
    with serving(create_app(source)) as base:
        fleet = get(base + "/")
        rollout = get(base + "/rollouts/legacy")
    for status, html, _ in (fleet, rollout):
        assert status == 200
        assert re.search(r'class="panel error".*status/legacy\.yaml: unreadable status, not valid YAML \(line 3',
                         html, re.S)
    assert "billing" in text_of(fleet[1])  # the other rollouts are shown as usual


def test_an_unknown_plugin_cluster_tier_or_page_is_a_404_page(source: MemoryRecordSource) -> None:
    with serving(create_app(source)) as base:
        for path, says in (("/rollouts/ghost", "No such plugin The fleet has no plugin named 'ghost' (known: auth, "
                                               "billing, legacy)."),
                           ("/history/ghost", "No such plugin"),
                           ("/history/auth/0000000000", "No such report"),
                           ("/clusters/nowhere-1", "No such cluster"),
                           ("/instances?tier=moon", "No such tier No cluster has the tier 'moon' (tiers: canary, "
                                                    "staging, prod)."),
                           ("/no/such/page", "Not found There is no page at /no/such/page.")):
            status, html, _ = get(base + path)
            assert status == 404, path
            assert says in text_of(html), path
            assert 'href="/"' in html  # a way back


def test_the_rollout_page_shows_batches_charts_timeline_and_history(source: MemoryRecordSource) -> None:
    with serving(create_app(source)) as base:
        _, billing, _ = get(base + "/rollouts/billing")
        _, auth, _ = get(base + "/rollouts/auth")
        _, history, _ = get(base + "/history/auth")
        status, report, _ = get(base + "/history/auth/f00dfeed01")
    page = text_of(billing)
    assert "Batch 1: canary ✓ Passed" in page and "Batch 2: wave-1 ◐ Baking" in page
    assert "Batch 3: all ○ Pending" in page and "needs an approval" in page
    assert billing.count('<svg class="chart"') == 2 and "error_rate: 1 reading(s) seen" in billing
    assert "max 0.05" in page
    assert re.search(r'<tr class="current rollback">.*↩.*rollback.*canary.*alice.*billing 1.6.0: rollback asked'
                     r'.*bbbbbbbbbb', billing, re.S)
    assert "The report is written when the rollout ends." in page
    assert "auth 2.0.0: Succeeded" in text_of(auth) and "<th scope=\"col\">Verdicts</th>" in auth
    assert "2.0.0 ✓ Succeeded" in text_of(history) and 'href="/history/auth/f00dfeed01"' in history
    assert status == 200 and "Report: auth 2.0.0 ✓ Succeeded" in text_of(report)


def test_the_instance_grid_and_a_cluster(source: MemoryRecordSource) -> None:
    with serving(create_app(source)) as base:
        _, grid, _ = get(base + "/instances")
        _, prod, _ = get(base + "/instances?tier=prod")
        _, cluster, _ = get(base + "/clusters/staging-1")
    assert 'title="staging-1/plugins billing: 1.6.0 (Done)"' in grid
    assert '<th scope="rowgroup" colspan="4">Tier canary</th>' in grid
    assert '<label for="tier">Tier</label>' in grid
    assert "Tier prod" in prod and "Tier canary" not in prod
    assert "staging-1/plugins billing: 1.6.0 (Done)" in text_of(cluster)


def read_event(response: http.client.HTTPResponse) -> tuple[str, dict[str, object]]:
    """The next `event:`/`data:` block of a text/event-stream (comments, such as keepalives, skipped)."""
    fields: dict[str, str] = {}
    while True:
        line = response.readline().decode("utf-8")
        assert line, "the event stream ended"
        if line.strip() == "":
            if "event" in fields:
                return fields["event"], json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.rstrip("\n").partition(": ")
            fields[key] = value


def test_events_say_when_the_record_changed(source: MemoryRecordSource) -> None:
    app = create_app(source)
    with serving(app) as base:
        connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=30)
        connection.request("GET", "/events", headers={"Accept": "text/event-stream"})
        response = connection.getresponse()
        assert response.status == 200 and response.headers["content-type"].startswith("text/event-stream")
        assert read_event(response) == ("hello", {"revision": source.record().revision})
        wait_for(lambda: app.state.web.broadcaster.listeners == 1, 30, "the stream to listen")
        moved = replace(source.record().states["billing"], phase=Phase.PAUSED, reason="paused by alice")
        record = source.publish(states={**source.record().states, "billing": moved})
        assert read_event(response) == ("changed", {"revision": record.revision, "plugins": ["billing"]})
        connection.close()


def test_the_assets_ship_in_the_package_and_nothing_comes_from_outside(source: MemoryRecordSource) -> None:
    with serving(create_app(source)) as base:
        for name in ("app.css", "live.js", "favicon.svg"):
            status, text, _ = get(f"{base}/static/{name}")
            assert status == 200 and text == (HERE / "static" / name).read_text(encoding="utf-8")
        pages = [get(base + path)[1] for path in ("/", "/rollouts/billing", "/instances", "/history/auth")]
    for text in pages + [(HERE / "static" / name).read_text() for name in ("app.css", "live.js")]:
        assert not re.search(r"(src|href)=\"(https?:)?//|@import|url\(|@font-face", text)


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_every_text_colour_in_the_stylesheet_has_a_contrast_of_at_least_4_5() -> None:
    css = (HERE / "static" / "app.css").read_text()
    checked = 0
    for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        colour = re.search(r"(?:^|;)\s*color:\s*(#[0-9a-fA-F]{6})", body)
        if colour is None:
            continue
        background = re.search(r"background(?:-color)?:\s*(#[0-9a-fA-F]{6})", body)
        against = background.group(1) if background else "#ffffff"
        assert contrast(colour.group(1), against) >= 4.5, (selector.strip(), colour.group(1), against)
        checked += 1
    assert checked >= 30
    assert contrast("#1b1b1b", "#ffffff") > 15 and round(contrast("#777777", "#ffffff"), 2) == 4.48  # the formula


def test_the_app_mounts_inside_another_app_under_a_prefix_or_at_the_root(source: MemoryRecordSource) -> None:
    web = create_app(source)
    outer = Starlette(routes=[Route("/metrics", lambda request: PlainTextResponse("grayops_up 1\n")),
                              Mount("/dash", web)])
    with serving(outer) as base:
        status, html, _ = get(base + "/dash/rollouts/billing")
        assert status == 200 and 'href="/dash/rollouts/billing"' not in html
        assert 'href="/dash/"' in html and 'href="/dash/static/app.css"' in html
        assert 'data-events="/dash/events"' in html
        assert get(base + "/dash/static/live.js")[0] == 200
    root = Starlette(routes=[Route("/metrics", lambda request: PlainTextResponse("grayops_up 1\n")), Mount("/", web)])
    with serving(root) as base:
        assert get(base + "/metrics")[1] == "grayops_up 1\n"
        assert get(base + "/rollouts/billing")[0] == 200 and get(base + "/rollouts/ghost")[0] == 404


def test_the_templates_escape_by_default() -> None:
    for template in (HERE / "templates").glob("*.html"):
        assert "|safe" not in template.read_text() and "autoescape false" not in template.read_text(), template
