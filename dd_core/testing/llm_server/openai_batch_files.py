"""The JSONL files of OpenAI's (and Azure's) Batch API in the test server: input lines checked
the way OpenAI checks them, and the output/error lines it writes back."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from dd_core.testing.llm_server.batch_lifecycle import LineOutcome, RequestLine, body_key, new_id

ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = re.compile(r"^([1-9][0-9]{0,3})([hd])$")


@dataclasses.dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def to_json(self, status: str = "processed") -> dict[str, Any]:
        return {
            "id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created_at,
            "filename": self.filename, "purpose": self.purpose, "status": status,
        }  # fmt: skip


def create_problem(body: Any, files: Mapping[str, StoredFile], endpoint: str = ENDPOINT) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    file_id = body.get("input_file_id")
    if not isinstance(file_id, str) or file_id not in files:
        return f"No such input file: {file_id!r}."
    if files[file_id].purpose != "batch":
        return f"File {file_id} has purpose {files[file_id].purpose!r}; a batch needs a file uploaded with purpose 'batch'."
    if body.get("endpoint") != endpoint:
        return f"'endpoint' must be {endpoint!r} on this server, got {body.get('endpoint')!r}."
    window = body.get("completion_window")
    if not isinstance(window, str) or not COMPLETION_WINDOW.match(window):
        return f"'completion_window' must look like '24h', got {window!r}."
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or len(metadata) > 16:
            return "'metadata' must be an object of at most 16 string pairs."
        for key, value in metadata.items():
            if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
                return "'metadata' keys are at most 64 characters and values strings of at most 512."
    return None


def parse_input(
    content: bytes, max_requests: int, endpoint: str = ENDPOINT
) -> tuple[list[RequestLine], list[dict[str, Any]]]:
    """The request lines of an input file, and the validation errors that fail the batch."""
    lines: list[RequestLine] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        problem, request = _line_problem(raw, seen, endpoint)
        if problem:
            errors.append({"code": "invalid_request", "message": problem, "param": None, "line": number})
            if len(errors) >= 100:
                break
            continue
        seen.add(request["custom_id"])
        lines.append(RequestLine(request["custom_id"], request["body"], body_key(request["body"])))
    if not lines and not errors:
        errors.append(
            {"code": "empty_file", "message": "The input file holds no requests.", "param": None, "line": None}
        )
    if len(lines) > max_requests:
        errors.append(
            {
                "code": "too_many_requests",
                "message": f"A batch holds at most {max_requests} requests, got {len(lines)}.",
                "param": None,
                "line": None,
            }
        )
    return lines, errors


def _line_problem(raw: bytes, seen: set[str], endpoint: str) -> tuple[str | None, Any]:
    try:
        request = json.loads(raw)
    except ValueError:
        return "The line is not valid JSON.", None
    if not isinstance(request, dict):
        return "Each line must be a JSON object.", None
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "'custom_id' must be a non-empty string.", None
    if custom_id in seen:
        return f"Duplicate custom_id {custom_id!r}.", None
    if request.get("method") != "POST":
        return "'method' must be 'POST'.", None
    if request.get("url") != endpoint:
        return f"'url' must be {endpoint!r} (the batch's endpoint), got {request.get('url')!r}.", None
    if not isinstance(request.get("body"), dict):
        return "'body' must be a JSON object.", None
    return None, request


def result_line(outcome: LineOutcome) -> dict[str, Any]:
    """The output- or error-file line of one request's outcome."""
    if outcome.kind == "answered":
        return response_line(outcome.line, outcome.status, outcome.body or {})
    if outcome.kind == "errored":
        return error_line(outcome.line, outcome.code or "server_error", "Injected batch failure.")
    if outcome.kind == "expired":
        return error_line(
            outcome.line, "batch_expired", "This request could not be executed before the completion window expired."
        )
    return error_line(outcome.line, "batch_cancelled", "This request was not run: the batch was cancelled.")


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def response_line(line: RequestLine, status: int, body: dict[str, Any]) -> dict[str, Any]:
    response = {"status_code": status, "request_id": new_id("req_"), "body": body}
    return {"id": new_id("batch_req_"), "custom_id": line.custom_id, "response": response, "error": None}


def error_line(line: RequestLine, code: str, message: str) -> dict[str, Any]:
    return {
        "id": new_id("batch_req_"),
        "custom_id": line.custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
