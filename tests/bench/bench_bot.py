"""Benchmark of the Slack bot; prints figures (no pass/fail).

    python tests/bench/bench_bot.py [--commands 200] [--pushed 30]

1. ack latency: 200 signed slash commands (/pause and /resume, alternating) sent back to back over HTTP to the
   running app; the time from sending each request to its HTTP response (Slack's limit is 3 s);
2. command to commit pushed: one command at a time, the time from sending it to the remote's main branch
   holding the commit with its Slack-Trigger-Id (a bare remote on local disk).

The bot acts on its own clone of a real git remote; its Web API calls and response_urls go to the loopback
fake Slack API of the tests.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bot.host import HostedBot, SlackEnv
from bot.service import Backend
from reconciler.adapters.gitrepo import GitRepo
from tests.bot.fake_slack import FakeSlack
from tests.bot.harness import ACCESS, SLOW_POLICY, TIERS, ServedBot
from tests.bot.slack_requests import SECRET, post, slash
from tests.conftest import plugin_yaml, settings_yaml


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def fleet(root: Path) -> Path:
    remote, human = root / "fleet.git", root / "human"
    git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    git(root, "clone", "-q", str(remote), str(human))
    git(human, "checkout", "-q", "-b", "main")
    files = {"grayops.yaml": settings_yaml(TIERS), "policies/slow.yaml": SLOW_POLICY, "access.yaml": ACCESS,
             "plugins/billing.yaml": plugin_yaml("billing", "1.5.0", policy="slow")}
    for path, text in files.items():
        (human / path).parent.mkdir(parents=True, exist_ok=True)
        (human / path).write_text(text)
    git(human, "add", "-A")
    git(human, "-c", "user.name=Alice Ops", "-c", "user.email=a@example.com", "commit", "-q", "-m", "fleet")
    git(human, "push", "-q", "origin", "main")
    return remote


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def line(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{name}: n={len(ms)} p50 {pct(ms, 50):.1f} ms, p99 {pct(ms, 99):.1f} ms, max {max(ms):.1f} ms, "
            f"mean {statistics.mean(ms):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--pushed", type=int, default=30)
    args = parser.parse_args()
    fake = FakeSlack()
    with tempfile.TemporaryDirectory(prefix="grayops-bench-bot-") as tmp:
        root = Path(tmp)
        remote = fleet(root)
        repo = GitRepo(str(remote), root / "bot")
        repo.ensure_clone()
        env = {"SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET, "GRAYOPS_SLACK_API_URL": fake.api_url}
        bot = ServedBot(HostedBot(Backend(repo), SlackEnv.read(env), env))
        url = bot.url
        try:
            acks = []
            for n in range(args.commands):
                command = "/pause" if n % 2 == 0 else "/resume"
                body = slash(command, "billing", trigger=f"ack-{n}", response_url=fake.response_url(f"ack-{n}"))
                started = time.perf_counter()
                status, _ = post(url, body, secret=SECRET)
                acks.append(time.perf_counter() - started)
                assert status == 200, status
            fake.wait_for(lambda: len(fake.of("response_url")) >= args.commands, timeout=600, what="every reply")

            pushed = []
            paused = "paused: true" in git(remote, "show", "main:plugins/billing.yaml")
            for n in range(args.pushed):
                command = "/resume" if paused else "/pause"
                paused = not paused
                trigger = f"push-{n}"
                body = slash(command, "billing", trigger=trigger, response_url=fake.response_url(trigger))
                started = time.perf_counter()
                post(url, body, secret=SECRET)
                while f"Slack-Trigger-Id: {trigger}" not in git(remote, "log", "-1", "--format=%B", "main"):
                    time.sleep(0.002)
                pushed.append(time.perf_counter() - started)
                fake.wait_for(partial(fake.responses, trigger), what="the reply")
        finally:
            bot.stop()
            fake.close()
    print(line(f"ack latency, {args.commands} signed commands back to back", acks))
    print(line("command to commit pushed, one at a time", pushed))


if __name__ == "__main__":
    main()
