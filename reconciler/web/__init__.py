"""The read-only web view of a fleet (README "Web view").

Owns: the read model of the record (`record.py`: `Record`, the `RecordSource` port, `MemoryRecordSource`), the
source that reads a remote repository from a clone it keeps fresh (`gitsource.py`), what each page shows
(`views.py`, pure), its pictures (`charts.py`) and the reports' Markdown (`markdown.py`), the ASGI app
(`app.py`: `create_app(source)`), the live updates (`live.py`: server-sent events), the templates and assets
shipped in the package, the `grayops dashboard` command (`command.py`), and the source fed by a running reconciler
(`inprocess.py`) with the one port `grayops run --listen` serves (`listen.py`: the view beside the telemetry).
Must not: change anything. The view only reads; every change is a commit made by the CLI, Slack or the API.
"""
