"""The Hangar executor: hands an environment's tasks to its cell's shared pool of task slots.

Hangar installs this package into every Python runtime it builds, and sets
``[core] executor = hangar_executor.HangarExecutor`` for environments created with
``executor: "hangar"``. It keeps no worker of its own: each queued task's workload (the JSON
document Airflow 3 gives any executor, with its short-lived token) goes over a Unix socket to
the Hangar agent of the environment's cell, which runs it as
``python -m airflow.sdk.execution_time.execute_workload --json-path FILE`` in this runtime, as
the environment's user and in its cgroup, when the cell's pool gives the environment a slot.

The socket (``HANGAR_TASK_POOL_SOCKET``) is the environment user's alone, and the agent checks
who is calling. One request per connection: a JSON object on one line, answered by one line.

- ``submit``: the workloads, each under its key; the agent keeps them on disk before it answers,
  and a key it already has is never run twice.
- ``status``: the state of the keys this scheduler is waiting for; a key the pool no longer
  knows has finished (its end was reported to a scheduler that is gone, or to nobody).
- ``adopt``: which of a dead scheduler's task instances the pool still queues or runs.
- ``revoke``: forget a queued task, or stop a running one.

Whatever the agent reports, Airflow trusts the task instance's own state in the metadata
database: a task that ended without setting it is failed by the scheduler, as with any executor.
"""

from __future__ import annotations

import json
import os
import socket
from typing import TYPE_CHECKING, Any, Sequence

from airflow.executors.base_executor import BaseExecutor
from airflow.executors.workloads import ExecuteTask
from airflow.models.taskinstancekey import TaskInstanceKey

if TYPE_CHECKING:
    from airflow.models.taskinstance import TaskInstance

__all__ = ["HangarExecutor", "PoolError", "key_of"]

SOCKET_VAR = "HANGAR_TASK_POOL_SOCKET"
# Seconds one request may take: the agent answers from memory, after at most one file write.
TIMEOUT = 10.0
# The longest answer read (a status of thousands of keys fits many times over).
MAX_ANSWER = 16 << 20


class PoolError(Exception):
    """The cell's task pool could not be asked (the agent restarting, say)."""


def key_of(key: TaskInstanceKey) -> str:
    """A task instance key as the pool knows it: one try of one (mapped) task instance."""
    return json.dumps([key.dag_id, key.task_id, key.run_id, key.try_number, key.map_index])


def _key_from(text: str) -> TaskInstanceKey:
    dag_id, task_id, run_id, try_number, map_index = json.loads(text)
    return TaskInstanceKey(dag_id, task_id, run_id, try_number, map_index)


def _connect(s: socket.socket, path: str) -> None:
    # A socket path holds at most 107 bytes: a longer one is reached through its folder's
    # descriptor, as the agent binds it.
    if len(os.fsencode(path)) < 107:
        s.connect(path)
        return
    folder = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        s.connect(f"/proc/self/fd/{folder}/{os.path.basename(path)}")
    finally:
        os.close(folder)


def call(path: str, request: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
    """One request to the pool at ``path``; raises ``PoolError`` with the reason."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            _connect(s, path)
            s.sendall(json.dumps(request).encode() + b"\n")
            chunks = []
            size = 0
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if chunk.endswith(b"\n") or size > MAX_ANSWER:
                    break
    except OSError as e:
        raise PoolError(f"failed to reach the task pool at {path}: {e}") from e
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError as e:
        raise PoolError(f"the task pool at {path} gave no answer: {e}") from e
    if not isinstance(answer, dict):
        raise PoolError(f"the task pool at {path} answered {answer!r}")
    if "error" in answer:
        raise PoolError(f"the task pool refused {request.get('op')}: {answer['error']}")
    return answer


class HangarExecutor(BaseExecutor):
    """Runs an environment's tasks in its Hangar cell's shared pool of task slots."""

    is_local = False
    serve_logs = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.socket_path = os.environ.get(SOCKET_VAR, "")
        # Keys handed to the pool and not yet reported finished, with whether they were seen
        # running (so each is reported running once).
        self._waiting: dict[str, bool] = {}

    def start(self) -> None:
        if not self.socket_path:
            raise PoolError(f"{SOCKET_VAR} is not set: this environment has no Hangar task pool")
        self.log.info("Hangar executor: tasks go to the task pool at %s", self.socket_path)

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        return call(self.socket_path, request)

    def _process_workloads(self, workloads: Sequence[Any]) -> None:
        tasks = []
        for w in workloads:
            if not isinstance(w, ExecuteTask):
                raise ValueError(f"HangarExecutor runs tasks only, not {type(w).__name__}")
            tasks.append({"key": key_of(w.ti.key), "workload": w.model_dump_json()})
        try:
            answer = self._call({"op": "submit", "tasks": tasks})
        except PoolError as e:
            # They stay queued here and are handed over again on the next heartbeat; the pool
            # never runs a key twice, so a submit whose answer was lost does no harm.
            self.log.warning("Tasks stay queued: %s", e)
            return
        refused = {r["key"]: r.get("reason", "") for r in answer.get("refused", [])}
        for w in workloads:
            key = w.ti.key
            k = key_of(key)
            self.queued_tasks.pop(key, None)
            if k in refused:
                self.log.error("The task pool refused %s: %s", k, refused[k])
                self.fail(key, refused[k])
                continue
            self.running.add(key)
            self._waiting[k] = False

    def sync(self) -> None:
        if not self._waiting:
            return
        try:
            answer = self._call({"op": "status", "keys": list(self._waiting)})
        except PoolError as e:
            self.log.warning("No task states this heartbeat: %s", e)
            return
        states = answer.get("tasks", {})
        for k in list(self._waiting):
            state = states.get(k, {"state": "unknown"})
            key = _key_from(k)
            kind = state.get("state")
            info = state.get("info")
            if kind == "running":
                if not self._waiting[k]:
                    self._waiting[k] = True
                    self.running_state(key, info)
            elif kind == "success":
                del self._waiting[k]
                self.success(key, info)
            elif kind == "failed":
                del self._waiting[k]
                self.fail(key, info)
            elif kind == "unknown":
                # Ended, and its end was reported before (to this or a previous scheduler) or
                # lost with an agent restart: Airflow reads the task instance's own state.
                del self._waiting[k]
                self.success(key, "the task pool no longer knows this task: it has ended")

    def try_adopt_task_instances(self, tis: Sequence[TaskInstance]) -> Sequence[TaskInstance]:
        if not tis:
            return []
        by_key = {key_of(ti.key): ti for ti in tis}
        try:
            answer = self._call({"op": "adopt", "keys": list(by_key)})
        except PoolError as e:
            self.log.warning("Adopting nothing: %s", e)
            return list(tis)
        adopted = set(answer.get("adopted", []))
        for k in adopted:
            if k in by_key:
                self.running.add(by_key[k].key)
                self._waiting[k] = False
        self.log.info("Adopted %d of %d task instances from the task pool", len(adopted), len(tis))
        return [ti for k, ti in by_key.items() if k not in adopted]

    def revoke_task(self, *, ti: TaskInstance) -> None:
        k = key_of(ti.key)
        try:
            self._call({"op": "revoke", "key": k})
        except PoolError as e:
            self.log.warning("Could not revoke %s: %s", k, e)
        self._waiting.pop(k, None)
        self.running.discard(ti.key)
        self.queued_tasks.pop(ti.key, None)

    def end(self) -> None:
        # The tasks belong to the cell's pool, not to this process: they keep running, and the
        # next scheduler adopts them.
        self.sync()

    def terminate(self) -> None:
        """Nothing to stop here: running tasks are the pool's."""
