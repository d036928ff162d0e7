"""The event-stream parser and the typed job events."""

import json

from netfit.sse import EpochEvent, StatusEvent, job_event, parse_sse


def test_events_dispatch_on_blank_lines_with_multiline_data_comments_and_retry():
    lines = [": keep-alive", "id: 1", "event: epoch", 'data: {"epoch": 1,', 'data:  "train_loss": 0.5}', "",
             "retry: 1500", "event: status", 'data: {"status": "running"}', "", "data: incomplete"]
    events = list(parse_sse(lines))
    assert [e.event for e in events] == ["epoch", "status"]
    assert json.loads(events[0].data) == {"epoch": 1, "train_loss": 0.5}
    assert events[0].id == "1" and events[1].id == "1"  # the last id persists, as the standard says
    assert events[1].retry_ms == 1500


def test_job_events_are_typed():
    (epoch, status, done, other) = [
        job_event(e) for e in parse_sse([
            "id: 7", "event: epoch", 'data: {"epoch": 3, "train_loss": 0.2, "val_accuracy": 0.9}', "",
            "id: 8", "event: status", 'data: {"status": "running"}', "",
            "id: 9", "event: status", 'data: {"status": "succeeded", "stop_reason": "early_stopping"}', "",
            "event: ping", "data: {}", "",
        ])
    ]
    assert isinstance(epoch, EpochEvent) and epoch.epoch == 3 and epoch.metrics.val_accuracy == 0.9 and epoch.id == "7"
    assert isinstance(status, StatusEvent) and not status.done
    assert done.done and done.stop_reason == "early_stopping"
    assert other is None
