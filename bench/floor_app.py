"""The floor under an AgentDeck message POST on this machine: the same web stack, doing almost nothing.

    python bench/floor_app.py --port 8123 --db /tmp/floor.db

uvicorn (with httptools and uvloop, as `main.py` runs), FastAPI, a pydantic body and a sync route run
in FastAPI's thread pool, like `POST /api/agents/{id}/messages`; the route inserts one row with plain
sqlite3 (WAL, synchronous=NORMAL, one transaction per request) and answers the row as JSON. No token,
no checks beyond the body's model, no event log, no search index, no middleware. bench_ingest.py
measures it beside the app in the same run: the app's figures as a share of this one say how much of
a request is AgentDeck and how much the stack and the machine.
"""

from __future__ import annotations

import argparse
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS msgs (id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, seq INTEGER NOT NULL, "
    "content TEXT NOT NULL, metadata TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (agent_id, seq))"
)


class Body(BaseModel):
    content: str = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)


def build(db_path: str) -> FastAPI:
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(SCHEMA)
    lock = threading.Lock()
    app = FastAPI()

    @app.get("/api/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/agents/{agent_id}/messages", status_code=201)
    def post(agent_id: uuid.UUID, body: Body) -> dict[str, Any]:
        row = {"id": str(uuid.uuid4()), "agent_id": str(agent_id), "content": body.content}
        with lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                seq = conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM msgs WHERE agent_id = ?", (row["agent_id"],))
                row["seq"] = seq.fetchone()[0]
                row["created_at"] = datetime.now(UTC).isoformat()
                conn.execute(
                    "INSERT INTO msgs VALUES (?, ?, ?, ?, ?, ?)",
                    (row["id"], row["agent_id"], row["seq"], body.content, "{}", row["created_at"]),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return row

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    uvicorn.run(build(args.db), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
