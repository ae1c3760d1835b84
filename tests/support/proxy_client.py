"""A client's chat completion through a running LiteLLM proxy, over plain HTTP as any client
sends it: the answer, or LiteLLM's error body, with its status."""

import json
import urllib.error
import urllib.request
from typing import Any


def post_completion(proxy_url: str, api_key: str, user: str) -> tuple[int, dict[str, Any]]:
    body = {"model": "gpt-4o-mini", "user": user, "messages": [{"role": "user", "content": "hi"}]}
    request = urllib.request.Request(
        f"{proxy_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
