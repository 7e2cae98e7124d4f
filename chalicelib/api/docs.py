"""API layer: `GET /docs`, a small page that lists the routes (until an OpenAPI document drives Swagger UI)."""
from __future__ import annotations

from html import escape
from typing import Any

# One line per route; the page lists what the app really has, so a route missing here still shows up.
_WHAT = {
    ("POST", "/deploy"): 'Deploy a model: {"embedding_model_id", "id"?, "config"?}; answers the task',
    ("GET", "/deploy/{task_id}"): "A deploy task with its events",
    ("GET", "/deploy-status/{embedding_model_id}"): "The newest deploy task of a model",
    ("POST", "/deploy/{task_id}/cancel"): "Cancel a deploy that has not swapped yet (a candidate too)",
    ("POST", "/deploy/{task_id}/promote"): "Make the candidate of a deploy awaiting promotion live",
    ("POST", "/delete"): 'Delete a model: {"embedding_model_id", "id"?, "reason"?}; answers the task',
    ("GET", "/delete/{task_id}"): "A deletion task with its events",
    ("GET", "/delete-status/{embedding_model_id}"): "The newest deletion task of a model",
    ("GET", "/models"): "The deployed models and the endpoints behind their aliases",
    ("GET", "/models/{embedding_model_id}"): "One model's alias: live, previous and candidate endpoint",
    ("POST", "/models/{embedding_model_id}/rollback"): "Point the alias back at the previous variant",
    ("POST", "/models/{embedding_model_id}/invoke"): 'Embed texts with the live variant: {"inputs": [...]}',
    ("GET", "/health"): "Liveness",
    ("GET", "/docs"): "This page",
}


def docs_page(routes: dict[str, dict[str, Any]]) -> str:
    """Plain HTML, no scripts or CDN: it must load offline and behind any gateway."""
    rows = "\n".join(
        f"<tr><td>{method}</td><td><code>{escape(path)}</code></td>"
        f"<td>{escape(_WHAT.get((method, path), ''))}</td></tr>"
        for path, methods in sorted(routes.items())
        for method in sorted(methods)
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>esdeploy API</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto}}td{{padding:.2rem .8rem}}</style></head>
<body><h1>esdeploy API</h1>
<p>Blue/green deployment of embedding models to Amazon SageMaker: Embedding Studio's inference-deployment
task API. Request bodies are JSON objects sent with <code>Content-Type: application/json</code>;
errors answer <code>{{"detail": "..."}}</code>.</p>
<table><tr><th>method</th><th>path</th><th>what</th></tr>
{rows}
</table>
<p>The full reference, with a real request and answer for every route, is <code>docs/api.md</code>
in the esdeploy repository; the <code>esdeploy</code> command line speaks this API for you.</p>
</body></html>
"""
