"""/tickets, /queues, /routing-rules, /tasks: service tickets, their queues and the store task list."""
from __future__ import annotations
