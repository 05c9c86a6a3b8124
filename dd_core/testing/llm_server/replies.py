"""The test server's reply content, whatever the provider: fixed by the request key (every choice
is drawn from ``random.Random(key)``), so tests and benchmarks can predict it. JSON for a schema, a
JSON object, fenced code when a prompt opens a fence, else a line echoing the last user turn."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from typing import Any

from dd_core.testing.llm_server.schema_faker import WORDS, SchemaFaker

_FENCE_OPENER = re.compile(r"```([A-Za-z][\w+#.-]*)")
_CODE_TEMPLATES = {
    "python": "def f_{h}():\n    return {n}",
    "sql": "SELECT id, label\nFROM t_{h}\nWHERE score > {n};",
    "javascript": "function f_{h}() {{\n  return {n};\n}}",
    "bash": 'set -euo pipefail\necho "f_{h} {n}"',
    "json": '{{"id": "{h}", "value": {n}}}',
}
_CODE_ALIASES = {"py": "python", "js": "javascript", "ts": "javascript", "typescript": "javascript", "sh": "bash"}
_GENERIC_CODE = "# {lang} snippet {h}\nvalue_{h} = {n}"


def structured_reply(schema: Any, key: str) -> str:
    """JSON that validates against ``schema``; SchemaError when the schema asks the impossible."""
    return json.dumps(SchemaFaker(schema, _rng(key)).value(schema))


def json_object_reply(key: str) -> str:
    return json.dumps({"answer": f"{_rng(key).choice(WORDS)} {key[:6]}"})


def text_reply(turns: Sequence[tuple[str, str]], key: str) -> str:
    """Code in the language of the last fence any turn opens, else a plain reply; ``turns`` are the
    conversation's (role, text) in order."""
    rng = _rng(key)
    texts = [text for _, text in turns]
    language = next((m.group(1) for m in map(_FENCE_OPENER.search, reversed(texts)) if m), None)
    if language is not None:
        return _code_reply(language, key, rng)
    return _plain_reply(turns, key, rng)


def invalid_reply(required: Sequence[str]) -> str:
    """Content that fails the requested format: JSON missing a required field, else prose."""
    if required and "oops" not in required:
        return '{"oops": true}'
    return "Sorry, I cannot answer in the requested format."


def _rng(key: str) -> random.Random:
    return random.Random(int(key, 16))


def _code_reply(language: str, key: str, rng: random.Random) -> str:
    name = _CODE_ALIASES.get(language.lower(), language.lower())
    code = _CODE_TEMPLATES.get(name, _GENERIC_CODE).format(h=key[:8], n=rng.randint(0, 999), lang=language)
    return f"Here is the {language} code ({key[:6]}):\n```{language}\n{code}\n```\nLet me know if it needs changes."


def _plain_reply(turns: Sequence[tuple[str, str]], key: str, rng: random.Random) -> str:
    users = [turn for turn in turns if turn[0] == "user"] or turns
    echo = " ".join(users[-1][1].split())[:60]
    return f"Reply {key[:6]} {rng.choice(WORDS)} {rng.choice(WORDS)} to: {echo}"
