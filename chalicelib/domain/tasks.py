"""The store task list: follow-up work a store must do by a time. A task knows its source (a ticket today;
an automation rule later) and is done once, with an outcome. Pure rules."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from . import clock
from .members import StoreId
from .orders import DocId

Sub = Annotated[str, Field(min_length=1, max_length=200)]


class TaskState(StrEnum):
    OPEN = "open"
    DONE = "done"


class TaskInput(BaseModel):
    """POST /tickets/{ticket_id}/tasks: work for a store (often another store than the ticket's)."""

    model_config = ConfigDict(extra="forbid")
    task_id: DocId
    store_id: StoreId
    title: str = Field(min_length=1, max_length=200)
    due_at: AwareDatetime = Field(description="ISO 8601 with offset")
    assignee: Sub | None = Field(default=None, description="a person at that store (their sub); default none")


class CompleteInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["done", "not_needed", "failed"] = Field(description="what came of it")
    note: str | None = Field(default=None, max_length=2_000)


class AssignInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: Sub


class TaskSource(BaseModel):
    kind: Literal["ticket", "automation"]
    id: str


class Task(BaseModel):
    task_id: str
    store_id: str
    title: str
    due_at: datetime
    state: TaskState = TaskState.OPEN
    assignee: str | None = None
    source: TaskSource
    created_at: datetime
    created_by: str
    completed_at: datetime | None = None
    completed_by: str | None = None
    outcome: str | None = None
    note: str | None = None

    def overdue(self, now: datetime) -> bool:
        return self.state is TaskState.OPEN and self.due_at < now

    def same_request(self, cmd: TaskInput, ticket_id: str) -> bool:
        """A retried add is the same request: same ticket, store, title, due time and assignee."""
        return (self.source.id == ticket_id and self.store_id == cmd.store_id and self.title == cmd.title
                and self.due_at == clock.to_ms(cmd.due_at) and self.assignee == cmd.assignee)


class TaskExists(Exception):
    """The task id is taken (a retry, or another request's task)."""


class TaskNotOpen(Exception):
    """The task was done already (a retry, or someone else finished it)."""
