"""A second, independent client of jarvis-local's WebSocket API (Python `websockets`).

Usage: ws_client.py <base http url>

Registers an account over HTTP, then checks over WebSocket what a browser client relies on:
a connect without a token is refused at the handshake with 401; a connect with one is
accepted; `ping` is answered; a subscriber to `archive` hears of an entry created over
HTTP; `chat.send` streams numbered deltas ending with `chat.done`; a message over 128 KiB
closes the socket with 1009. Prints one line per check and exits non-zero on the first
failure.
"""

import asyncio
import json
import sys
import urllib.request
import uuid

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus


def http(base, method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", "Bearer " + token)
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(request, data, timeout=30) as response:
        text = response.read()
        return json.loads(text) if text else None


async def receive(ws, wanted):
    """The next message whose type is `wanted`, skipping others."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message.get("type") == wanted:
            return message
        if message.get("type") == "error":
            raise AssertionError(f"error while waiting for {wanted}: {message}")


async def main(base):
    ws_base = base.replace("http://", "ws://", 1) + "/ws"
    email = f"py-{uuid.uuid4().hex[:8]}@example.com"
    password = "a long enough password 1"
    http(base, "POST", "/auth/register", {"email": email, "password": password})
    token = http(base, "POST", "/auth/login", {"email": email, "password": password})["access_token"]

    try:
        async with websockets.connect(ws_base):
            raise AssertionError("a connect without a token was accepted")
    except InvalidStatus as refused:
        assert refused.response.status_code == 401, refused.response.status_code
    print("ok: a connect without a token is refused with 401")

    async with websockets.connect(f"{ws_base}?token={token}") as ws:
        await ws.send(json.dumps({"action": "ping", "id": 1}))
        pong = await receive(ws, "pong")
        assert pong["id"] == 1 and pong["connection_id"], pong
        print("ok: ping is answered with pong")

        await ws.send(json.dumps({"action": "subscribe", "topics": ["archive"]}))
        subscribed = await receive(ws, "subscribed")
        assert subscribed["topics"] == ["archive"], subscribed
        entry = http(base, "POST", "/archive", {"kind": "note", "title": "from python", "content": "x"}, token)
        changed = await receive(ws, "archive.changed")
        assert changed["id"] == entry["id"] and changed["change"] == "created", changed
        print("ok: an archive entry created over HTTP is heard over WebSocket")

        conversation = http(base, "POST", "/chat/conversations", {}, token)
        content = "independent clients agree"
        await ws.send(json.dumps({"action": "chat.send", "conversation_id": conversation["id"], "content": content}))
        started = await receive(ws, "chat.started")
        text, seqs = "", []
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if message.get("stream_id") != started["stream_id"]:
                continue
            seqs.append(message["seq"])
            if message["type"] == "chat.delta":
                text += message["text"]
            if message["type"] in ("chat.done", "chat.error", "chat.cancelled"):
                assert message["type"] == "chat.done", message
                break
        assert content in text, text
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        print("ok: chat.send streams numbered deltas ending with chat.done")

        await ws.send("x" * (128 * 1024 + 1))
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1009, closed
        print("ok: a message over 128 KiB closes the socket with 1009")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1].rstrip("/")))
