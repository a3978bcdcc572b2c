"""A cap on request bodies: a JSON body over the limit is refused with 413 before it is all read.

The upload endpoints (multipart files) have their own, larger caps (api.uploads) and are exempt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body
from api.responses import OrjsonResponse


def _too_large(limit: int) -> str:
    return f"请求体过大 / the request body is larger than {limit // 1024} KiB"


class BodyLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` (declared or counted as they come)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        exempt: Collection[str] = (),
        exempt_pattern: re.Pattern[str] | None = None,
        by_prefix: Mapping[str, int] | None = None,
        answer_by_prefix: Mapping[str, Callable[[str, str], Response]] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = frozenset(exempt)
        # Upload paths with an id in them (a dispute's evidence) cap their own bodies too.
        self.exempt_pattern = exempt_pattern
        # Paths under these prefixes have their own cap (the scan page's report form carries a photo).
        self.by_prefix = dict(by_prefix or {})
        # Paths whose clients read another error shape (Open311): (path, message) -> the 413 answer.
        self.answer_by_prefix = dict(answer_by_prefix or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, with its body counted."""
        path = scope["path"].rstrip("/") if scope["type"] == "http" else ""
        if (
            scope["type"] != "http"
            or path in self.exempt
            or (self.exempt_pattern is not None and self.exempt_pattern.fullmatch(path))
        ):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for prefix, cap in self.by_prefix.items():
            if scope["path"].startswith(prefix):
                limit = cap
                break
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                answer = next(
                    (
                        make
                        for prefix, make in self.answer_by_prefix.items()
                        if scope["path"].startswith(prefix)
                    ),
                    None,
                )
                response = (
                    answer(scope["path"], _too_large(limit))
                    if answer is not None
                    else OrjsonResponse(error_body("HTTPError", _too_large(limit)), status_code=413)
                )
                await response(scope, receive, send)
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, counted, send)
