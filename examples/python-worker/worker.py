#!/usr/bin/env python3
"""A botfleet worker in Python, speaking the protocol's JSON encoding
(docs/protocol.md): it answers every text message with "echo <text>".

Run it from fleet.toml:

    [bot.worker]
    command = "python3"
    args = ["examples/python-worker/worker.py"]
"""
import json
import os
import socket
import struct
import threading
import time


def send(sock, lock, *messages):
    payload = json.dumps(list(messages)).encode()
    with lock:
        sock.sendall(struct.pack(">I", len(payload)) + payload)


def frames(sock):
    buf = b""
    while True:
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
        n = struct.unpack(">I", buf[:4])[0]
        yield json.loads(buf[4:4 + n])
        buf = buf[4 + n:]


def main():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["BOTFLEET_SOCKET"])
    lock = threading.Lock()
    worker_id = int(os.environ["BOTFLEET_WORKER_ID"])
    send(sock, lock, {"type": "hello", "version": 1, "worker_id": worker_id,
                      "pid": os.getpid(), "bot": os.environ.get("BOTFLEET_BOT", "-")})
    incoming = frames(sock)
    welcome = next(incoming)[0]
    if welcome["type"] != "welcome":
        raise SystemExit(f"refused: {welcome}")
    send(sock, lock, {"type": "ready"})

    def heartbeat():
        seq = 0
        while True:
            time.sleep(welcome["heartbeat_ms"] / 1000)
            seq += 1
            send(sock, lock, {"type": "heartbeat", "seq": seq})

    threading.Thread(target=heartbeat, daemon=True).start()
    request_id = 0
    waiting = {}  # request id -> the update it answers
    draining = False
    for frame in incoming:
        for message in frame:
            kind = message["type"]
            if kind == "updates":
                for delivery in message["updates"]:
                    msg = delivery["update"].get("message") or {}
                    if "text" not in msg:
                        send(sock, lock, {"type": "acks", "acks": [{"update_id": delivery["update_id"]}]})
                        continue
                    request_id += 1
                    waiting[request_id] = delivery["update_id"]
                    send(sock, lock, {"type": "actions", "actions": [{
                        "request_id": request_id, "method": "sendMessage",
                        "params": {"chat_id": msg["chat"]["id"], "text": "echo " + msg["text"]}}]})
            elif kind == "results":
                # The reply was sent (or failed for good): the update is done.
                acks = [{"update_id": waiting.pop(r["request_id"]),
                         "outcome": "handled" if r["ok"] else "failed"}
                        for r in message["results"] if r["request_id"] in waiting]
                send(sock, lock, {"type": "acks", "acks": acks})
                if draining and not waiting:
                    send(sock, lock, {"type": "drained"})
            elif kind == "drain":
                draining = True
                if not waiting:
                    send(sock, lock, {"type": "drained"})
            elif kind in ("shutdown", "error"):
                return

if __name__ == "__main__":
    main()
