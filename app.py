"""The Chalice app: creates it and registers the routes. No logic here (see chalicelib/api/)."""
from chalice import Chalice

from chalicelib.api import register_routes

app = Chalice(app_name="chaincrm")
register_routes(app)
