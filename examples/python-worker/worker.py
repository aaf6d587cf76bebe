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

    # The worker's own metrics, as totals since it started: the supervisor
    # serves them on its monitor with `bot` and `worker` labels added
    # (docs/protocol.md, "Worker metrics"), unless it runs no monitor.
    echoed = {"total": 0}
    metrics = os.environ.get("BOTFLEET_METRICS") != "off"

    def heartbeat():
        seq = 0
        while True:
            time.sleep(welcome["heartbeat_ms"] / 1000)
            seq += 1
            messages = [{"type": "heartbeat", "seq": seq}]
            if metrics:
                messages.append({"type": "series", "series": [
                    {"name": "echo_replies_total", "labels": {"language": "python"},
                     "counter": echoed["total"]}]})
            send(sock, lock, *messages)

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
                # The reply was sent, failed for good, or could not reach
                # Telegram (no answer, 429, 5xx): then the supervisor keeps
                # the update and hands it out again later ("retry").
                acks = [{"update_id": waiting.pop(r["request_id"]),
                         "outcome": outcome(r)}
                        for r in message["results"] if r["request_id"] in waiting]
                echoed["total"] += sum(1 for a in acks if a["outcome"] == "handled")
                send(sock, lock, {"type": "acks", "acks": acks})
                if draining and not waiting:
                    send(sock, lock, {"type": "drained"})
            elif kind == "drain":
                draining = True
                if not waiting:
                    send(sock, lock, {"type": "drained"})
            elif kind in ("shutdown", "error"):
                return

def outcome(result):
    """The ack's outcome for an update whose one Bot API call gave `result`."""
    if result["ok"]:
        return "handled"
    code = result["body"].get("error_code", 0)
    return "retry" if code == 0 or code == 429 or code >= 500 else "failed"


if __name__ == "__main__":
    main()
