"""The Models view's web app (FastAPI), mounted in Airflow's API server by the plugin. Who asks comes from the
dependency the plugin gives (Airflow's own login); each model is shown only to a user who may read its DAGs.

No postponed annotations here: FastAPI reads the routes' annotations, which name the dependency given at run time."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from airloop.core.settings import Settings
from airloop.model.context import ModelContext, load_model_specs
from airloop.web.overview import models_overview
from airloop.web.pages import models_page


def models_app(
    *,
    settings: Callable[[], Settings],
    user: Callable[..., Any],
    may_read: Callable[[Any, str], bool],
) -> FastAPI:
    """The app: ``GET /models`` (the page) and ``GET /api/models`` (its rows as JSON). ``user`` is a FastAPI
    dependency that answers who asks (or refuses: 401 for no login); ``may_read(user, model)`` whether they may
    see the model."""
    app = FastAPI(title="airloop models", docs_url=None, redoc_url=None, openapi_url=None)

    def overview(who: Any) -> tuple[list[dict[str, Any]], list[str]]:
        config = settings()
        folder = load_model_specs(config.models_dir, cache_dir=config.cache_dir / "specs")
        contexts = [ModelContext(config, spec) for spec in folder.specs if may_read(who, spec.name)]
        return models_overview(contexts, datetime.now(UTC)), [str(e) for e in folder.errors]

    @app.get("/api/models")
    def models_json(who: Annotated[Any, Depends(user)]) -> dict[str, Any]:
        rows, errors = overview(who)
        return {"models": rows, "broken_specs": errors}

    @app.get("/models", response_class=HTMLResponse)
    def models_html(who: Annotated[Any, Depends(user)]) -> HTMLResponse:
        rows, errors = overview(who)
        return HTMLResponse(models_page(rows, errors))

    return app
