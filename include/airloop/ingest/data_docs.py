"""The Great Expectations Data Docs site: every validation's page and an index of the latest ones.

Publishing is coalesced across processes. A result is queued (``site_dir/.gx/queue/``, written atomically);
whichever process holds the publish lock renders every queued result with one index rebuild. A process that finds
the lock taken leaves its result to the holder and returns at once; the holder looks at the queue again after
releasing the lock, so nothing queued is left behind. A week of days validated at once rebuilds the index a few
times instead of seven, and no validation waits for another's publishing.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from airloop.core.files import lock_if_free, write_json
from airloop.vendor.gx import context as gx_context

#: Name of the Data Docs site.
SITE = "airloop"
#: The index lists the latest validations only: GX reads every listed result to build it, so an unbounded index
#: makes each publish slower as the site grows (1.7 s at 150 results). Older pages stay on disk.
INDEX_LIMIT = 31

log = logging.getLogger(__name__)


def publish(gx_: SimpleNamespace, suite: Any, key: Any, result: dict[str, Any], site_dir: Path) -> None:
    """Add a result's page (``key``, ``result`` as GX's JSON) to the Data Docs site in ``site_dir``, with the page
    of ``suite`` (a suite not attached to a context) when its contract changed, and rebuild the index.

    GX builds the index from its validation-results and expectation stores and deletes every page whose result is
    not in them; with the in-memory stores of a fresh (per task) context, each task would wipe the pages of
    earlier ones. So the docs context keeps both stores on disk, in ``site_dir/.gx/``, and only new pages are
    rendered (an incremental build).
    """
    gx_dir = site_dir / ".gx"
    queue = gx_dir / "queue"
    write_json(
        queue / f"{result['meta']['airloop']['result_id']}.json",
        {"key": list(key.to_tuple()), "result": escaped_for_pages(result)},
    )
    while any(queue.glob("*.json")):
        with lock_if_free(gx_dir / "publish.lock") as held:
            if not held:
                return
            _render_queued(gx_, suite, queue, site_dir)


def escaped_for_pages(result: dict[str, Any]) -> dict[str, Any]:
    """A copy of a GX result whose strings from the data are HTML-escaped: what each expectation observed (column
    names, unexpected values, counts by value) and the messages of checks that raised. GX 1.x writes these into
    Data Docs pages as they are, so a delivered column named ``<script>...</script>`` would run in the browser of
    whoever opens the page. Only the pages' copy is escaped; the result kept as JSON is what GX returned."""
    items = []
    for item in result.get("results", []):
        item = dict(item)
        for part in ("result", "exception_info"):
            if part in item:
                item[part] = _escape_strings(item[part])
        items.append(item)
    return {**result, "results": items}


def _escape_strings(value: Any) -> Any:
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, dict):
        return {_escape_strings(k) if isinstance(k, str) else k: _escape_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escape_strings(v) for v in value]
    return value


def _render_queued(gx_: SimpleNamespace, suite: Any, queue: Path, site_dir: Path) -> None:
    """Move the queued results into the docs stores and render their pages and the index (under the lock)."""
    context = gx_context(
        stores_dir=site_dir / ".gx", site_dir=site_dir, site_name=SITE, index_limit=INDEX_LIMIT
    )
    store = context.validation_results_store
    queued = sorted(queue.glob("*.json"))
    resources = []
    for path in queued:
        try:
            item = json.loads(path.read_text())
            key = gx_.ValidationResultIdentifier.from_tuple(tuple(item["key"]))
            store.set(key, store.deserialize(item["result"]))
        except Exception:  # noqa: BLE001 - one unreadable item must not stop every later publish
            log.exception("Data Docs: %s cannot be rendered", path)
            _set_aside(path)
            continue
        resources.append(key)
    suite_key = gx_.ExpectationSuiteIdentifier(name=suite.name)
    # GX's add_or_update compares expectations pairwise (about 0.5 s for 68); the digest says the same.
    stored = (
        context.expectations_store.get(suite_key) if context.expectations_store.has_key(suite_key) else None
    )
    if not stored or stored.get("meta", {}).get("contract_digest") != suite.meta["contract_digest"]:
        context.suites.add_or_update(suite)
        resources.append(suite_key)
    try:
        context.build_data_docs(site_names=[SITE], resource_identifiers=resources)
    except Exception:
        # Set aside, so that whatever broke this build cannot break every later one; the task fails (and retries).
        for path in queued:
            _set_aside(path)
        raise
    for path in queued:
        path.unlink(missing_ok=True)


def _set_aside(path: Path) -> None:
    """Keep a queued result that could not be rendered as ``<name>.failed``: out of the queue, not lost."""
    if path.exists():
        path.rename(path.with_name(f"{path.name}.failed"))
