"""The HTTP API and the git push webhooks (README "HTTP API").

Owns: the JSON API's routes (`/internal/version/upgrade/plan`, `/internal/version/upgrade/rollback`,
`/api/v1/rollouts/...`), its bearer tokens (access.yaml `tokens:`, checked by digest in constant time, with
scopes and a per-token rate), the push webhooks at `/webhooks/git` (GitHub, GitLab, Gitea/Forgejo: verified,
de-duplicated by delivery id, a push to the watched branch wakes the reconciler to fetch at once), and the limits
on what a client may send (1 MiB bodies, strict JSON fields).
Must not: change the fleet any other way than the CLI and Slack do. Every state change is
`reconciler.commands.run_command`, a commit with `Requested-By: <person> (api token <name>)`; a plan is the code
behind `grayops plan` (`core/planview.py`). It serves no port of its own: `api_routes(backend)` gives Starlette
routes for the one server to mount, `create_api_app(backend)` an app of them alone.
"""

from reconciler.api.backend import ApiBackend, Rate
from reconciler.api.routes import api_routes, create_api_app

__all__ = ["ApiBackend", "Rate", "api_routes", "create_api_app"]
