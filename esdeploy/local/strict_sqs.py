"""Local stack: the embedded SQS refuses what SQS refuses — a message over its queue's size, or a
character SQS does not take.

moto accepts both: it measures a body in characters, not bytes, leaves its message attributes out,
and takes any character, so a script that works on `esdeploy local` (or in the tests) could fail
on AWS. SQS counts the body's UTF-8 bytes and every attribute's name, type and value against the
queue's MaximumMessageSize (infra/template.yaml pins 256 KiB), and allows only
#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF (the XML 1.0 characters;
SendMessage and SendMessageBatch in the SQS API reference, and "Amazon SQS message quotas").
Refused with SQS's own codes and words: InvalidParameterValue "One or more parameters are invalid.
Reason: Message must be shorter than 262144 bytes.", InvalidMessageContents "Invalid binary
character '#x0' was found in the message body, the set of allowed characters is ...".
"""
from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from typing import Any

# What SQS refuses: anything outside its allowed set (lone surrogates included).
_NOT_ALLOWED = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
ALLOWED_CHARACTERS = "#x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]"


def refusal(maximum_bytes: int, body: str, attributes: Mapping[str, Any] | None = None) -> tuple[str, str] | None:
    """(SQS's error code, its message) for a message SQS would refuse; None when it takes it."""
    bad = _NOT_ALLOWED.search(body)
    if bad is not None:
        return (
            "InvalidMessageContents",
            f"Invalid binary character '#x{ord(bad.group(0)):X}' was found in the message body, "
            f"the set of allowed characters is {ALLOWED_CHARACTERS}.",
        )
    if message_bytes(body, attributes) > maximum_bytes:
        return (
            "InvalidParameterValue",
            f"One or more parameters are invalid. Reason: Message must be shorter than {maximum_bytes} bytes.",
        )
    return None


def message_bytes(body: str, attributes: Mapping[str, Any] | None = None) -> int:
    """What SQS counts against MaximumMessageSize: the body's UTF-8 bytes, and each attribute's
    name, data type and value."""
    size = len(body.encode("utf-8", "surrogatepass"))
    for name, attribute in (attributes or {}).items():
        size += len(name.encode()) + len(str(attribute.get("DataType", "")).encode())
        if attribute.get("StringValue") is not None:
            size += len(str(attribute["StringValue"]).encode("utf-8", "surrogatepass"))
        binary = attribute.get("BinaryValue")
        if isinstance(binary, bytes):
            size += len(binary)
        elif isinstance(binary, str):
            try:
                size += len(base64.b64decode(binary))
            except (binascii.Error, ValueError):
                size += len(binary)
    return size


def keep_sqs_strict() -> None:
    """Make moto's SQS refuse what SQS refuses, for this process (the embedded server runs in the
    local stack's process; the tests use moto in-process). Idempotent."""
    from moto.sqs.exceptions import SQSException
    from moto.sqs.models import SQSBackend

    if getattr(SQSBackend.send_message, "_esdeploy_strict", False):
        return
    send_one, send_batch = SQSBackend.send_message, SQSBackend.send_message_batch

    def refuse(queue: Any, body: str, attributes: Mapping[str, Any] | None) -> None:
        found = refusal(int(queue.maximum_message_size), body, attributes)
        if found is not None:
            raise SQSException(*found)

    @functools.wraps(send_one)
    def send_message(self: Any, queue_name: str, message_body: str, message_attributes: Any = None,
                     *args: Any, **kwargs: Any) -> Any:
        refuse(self.get_queue(queue_name), message_body, message_attributes)
        return send_one(self, queue_name, message_body, message_attributes, *args, **kwargs)

    @functools.wraps(send_batch)
    def send_message_batch(self: Any, queue_name: str, entries: dict[str, dict[str, Any]]) -> Any:
        queue = self.get_queue(queue_name)
        for entry in entries.values():  # every entry before any is sent, as moto checks its own rules
            refuse(queue, entry.get("MessageBody", ""), entry.get("MessageAttributes"))
        return send_batch(self, queue_name, entries)

    send_message._esdeploy_strict = True  # type: ignore[attr-defined]
    SQSBackend.send_message = send_message  # type: ignore[method-assign]
    SQSBackend.send_message_batch = send_message_batch  # type: ignore[method-assign]
