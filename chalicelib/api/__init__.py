"""HTTP layer: one module of views per resource, each view declared with `routing.route`.

Cold start: the app registers every route from routes.json (written from the views' own declarations by
`python -m chalicelib.cli routes`; a test keeps it current) with a dispatcher that imports the view's
module on its first call. `import app` therefore builds no pydantic model: a cold container pays only for
the modules of the routes it actually serves (see docs/decisions.md, "lazy views")."""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

ROUTE_TABLE = Path(__file__).with_name("routes.json")
VIEW_MODULES = ("meta", "sessions", "stores", "members", "orders", "points", "program", "coupons", "pool", "tickets",
                "kb", "sla", "calendars", "tags", "analytics", "reports")


def register_routes(app: Any) -> None:
    for entry in json.loads(ROUTE_TABLE.read_text()):
        handler = _dispatcher(app, entry["module"], entry["view"])
        app.route(entry["path"], methods=[entry["method"]], content_types=["*/*"],
                  name=f"{entry['module'].rsplit('.', 1)[-1]}_{entry['view']}")(handler)


def _dispatcher(app: Any, module: str, view: str) -> Any:
    target: list[Any] = []

    def handler(**params: str) -> Any:
        if not target:  # first call in this container: import the view (and its models) now
            target.append(getattr(importlib.import_module(module), view))
        return target[0](app.current_request, **params)

    return handler


def load_all() -> list[Any]:
    """Import every view module; the route specs they declared (for the OpenAPI document and routes.json)."""
    from .routing import ROUTES

    for name in VIEW_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    # In module order, then declaration order: the same list whichever view a request loaded first.
    return sorted(ROUTES, key=lambda spec: VIEW_MODULES.index(spec.module.rsplit(".", 1)[-1]))


def route_table() -> list[dict[str, str]]:
    return [{"method": s.method, "path": s.path, "module": s.module, "view": s.name} for s in load_all()]


def write_route_table() -> Path:
    ROUTE_TABLE.write_text(json.dumps(route_table(), indent=1) + "\n")
    return ROUTE_TABLE
