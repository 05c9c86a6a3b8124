"""Which failures a later attempt may cure (retried within ``max_retries``) and which it cannot.

The one table of the run's retry decisions, whatever the provider (the README prints it):

- HTTP statuses: timeouts and conflicts (408, 409, 425), back-pressure (429; 503 from an
  admission queue or an overloaded server; Anthropic's 529) and server errors (500, 502, 504)
  are transient; every other 4xx (a bad request, a refused key, a content policy) is not.
- Line-level errors in a batch's error file (``{"error": {"code": ...}}``; the code, or its
  ``type`` when there is no code): server errors, rate limits, timeouts, overload, expiry and a
  cancellation the user did not ask for are transient; an invalid request, a content policy,
  a context too long, a missing model or quota are not, and neither is a code dd does not know
  (retrying it would pay again for the same answer). dd never cancels a batch, so nothing of a
  batch that ended ``cancelled`` is sent again: someone asked for it.
"""

from __future__ import annotations

#: HTTP statuses a later attempt may succeed on.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
#: Answers that mean "too much at once": rate limits (429), vLLM's admission queue and other
#: overloaded servers (503), Anthropic's "overloaded" (529). They also halve the in-flight limit.
THROTTLING_STATUS = frozenset({429, 503, 529})

#: Line-level error codes of a batch (OpenAI's error file, Anthropic's errored results) that a
#: later batch may succeed on (``batch_cancelled`` only when the batch itself was not cancelled).
TRANSIENT_LINE_CODES = frozenset(
    {
        "server_error",
        "internal_error",
        "internal_server_error",
        "api_error",
        "service_unavailable",
        "overloaded",
        "overloaded_error",
        "rate_limit_exceeded",
        "rate_limit_error",
        "timeout",
        "request_timeout",
        "timeout_error",
        "batch_expired",
        "expired",
        "batch_cancelled",
        "canceled",
        "cancelled",
    }
)
#: Line-level codes a later batch cannot cure (documented; any code not in either set is treated so too).
PERMANENT_LINE_CODES = frozenset(
    {
        "invalid_request",
        "invalid_request_error",
        "content_policy_violation",
        "content_filter",
        "context_length_exceeded",
        "model_not_found",
        "not_found_error",
        "invalid_api_key",
        "authentication_error",
        "permission_error",
        "insufficient_quota",
        "billing_error",
    }
)


def line_retryable(code: str, *, batch_cancelled: bool = False) -> bool:
    """Whether a request that failed inside a batch with ``code`` goes into a later batch;
    ``batch_cancelled``: the batch as a whole ended cancelled (someone asked for it), so
    nothing of it is sent again."""
    return not batch_cancelled and code in TRANSIENT_LINE_CODES
