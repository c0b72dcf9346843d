"""Local-only tooling: launchers for DynamoDB Local, moto's server and a fake WeChat, demo data.
Never imported by app.py, chalicelib/api, services, store or functions (import-linter holds this line)."""
