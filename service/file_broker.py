"""The embedded broker: kombu's filesystem transport, with messages that appear whole.

kombu writes a message under its final name (open, then write), so a worker polling the
folder can take the file between the two and read it empty: the worker then dies of a
JSONDecodeError and the job waits for the reconciler (celery/kombu#1551, seen under load).
Here a message is written under a name consumers skip and renamed into place: a rename
within one folder is atomic."""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        # kombu's naming (time-ordered, then the queue): consumers match "<queue>.msg" after
        # the first dot, which the partial file's leading dot hides from them
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
