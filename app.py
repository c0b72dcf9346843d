"""The Chalice app: creates it and registers the blueprints. No logic here (see chalicelib/api/)."""
from chalice import Chalice

from chalicelib.api import register_blueprints

app = Chalice(app_name="chaincrm")
register_blueprints(app)
