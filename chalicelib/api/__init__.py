"""HTTP layer: one Chalice blueprint per resource."""
from __future__ import annotations

from chalice import Chalice


def register_blueprints(app: Chalice) -> None:
    from . import members, meta, orders, points, program, sessions, stores

    for module in (meta, sessions, stores, members, orders, points, program):
        app.register_blueprint(module.bp)
