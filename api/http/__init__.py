"""The HTTP API (FastAPI): `api.http.app.create_app(services)`."""
