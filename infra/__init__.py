"""Deployment: the CloudFormation merge template (stack.py builds it from template.json and the manifests
functions.json / api.json) and the packaging that turns the repository into dist/ (package.py)."""
