#!/usr/bin/python3
"""The consumer from Rasa's event-broker docs, instrumented: pika.BlockingConnection, basic_consume with a
callback that does json.loads(body), auto_ack=True. It declares nothing (the docs' consumer does not).

Usage: rasa_consumer.py --url URL --queue Q --count N [--timeout SECONDS]
Writes one JSON line per message to stdout: the raw body (base64), what json.loads gave (its sender_id and event),
the properties (delivery_mode, app_id, content_type, headers) and where it came from (exchange, routing_key).
Exits 0 after N messages, 2 when the timeout passes first.
"""
import argparse
import base64
import json
import os
import sys
import time

import pika


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--queue", default="rasa_core_events")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    received = 0

    def callback(ch, method, properties, body):
        nonlocal received
        # Rasa's docs: "Do something useful with your incoming message body here".
        event = json.loads(body)
        received += 1
        line = {
            "body": base64.b64encode(body).decode("ascii"),
            "sender_id": event.get("sender_id"),
            "event": event.get("event"),
            "delivery_mode": properties.delivery_mode,
            "app_id": properties.app_id,
            "content_type": properties.content_type,
            "headers": properties.headers,
            "exchange": method.exchange,
            "routing_key": method.routing_key,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    channel.basic_consume(queue=args.queue, on_message_callback=callback, auto_ack=True)
    # start_consuming() would never return: process events in slices until N arrived or the time is up.
    deadline = time.monotonic() + args.timeout
    while received < args.count and time.monotonic() < deadline:
        connection.process_data_events(time_limit=min(0.25, max(0.0, deadline - time.monotonic())))
    connection.close()
    if received < args.count:
        print(f"timeout: received {received} of {args.count} messages", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
