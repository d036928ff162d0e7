"""The embedded file broker hands out only whole messages (service.file_broker)."""

from __future__ import annotations

import os
import queue

import pytest

from service.queue import create_celery


def test_a_message_being_written_is_invisible_until_it_is_renamed_into_place(tmp_path):
    app = create_celery(f"filesystem://{tmp_path}")
    folder = tmp_path / "queue"
    with app.connection_for_write() as conn:
        inbox = conn.SimpleQueue("cpu")
        inbox.put({"job": "a"})
        # what the transport wrote is whole, and no partial file is left behind
        [message] = list(folder.iterdir())
        assert message.name.endswith(".cpu.msg") and message.stat().st_size > 0
        # the writer's state before its rename: the same file under the partial name
        partial = folder / f".{message.name}.partial"
        os.replace(message, partial)
        assert inbox.qsize() == 0
        with pytest.raises(queue.Empty):
            inbox.get(timeout=0.2)
        assert partial.exists()  # not taken, not removed
        os.replace(partial, message)
        assert inbox.get(timeout=2).payload == {"job": "a"}
        inbox.close()
