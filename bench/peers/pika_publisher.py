#!/usr/bin/env python3
"""The Python peer of bench/amqp.mjs: publishes N event bodies to RabbitMQ with publisher confirms, the way
Rasa-era code wrote it with pika (Rasa 1.x's PikaEventBroker): a BlockingConnection, confirm_delivery(), Rasa's
topology (a non-durable fanout exchange, a durable queue bound with ''), and one basic_publish per event with
delivery_mode=2 (persistent), each of which waits for its confirm because confirms are on.

    pika_publisher.py --url amqp://guest:guest@127.0.0.1:5672 --exchange X --queue Q --bodies FILE [--count N]

FILE holds one body per line (the bytes Parley publishes). Prints the seconds the publishing loop took (connecting
and declaring excluded), alone on the last line.
"""
import argparse
import sys
import time

import pika


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672")
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--bodies", required=True, help="a file with one body per line")
    parser.add_argument("--count", type=int, default=0, help="publish only the first N bodies (0: all)")
    args = parser.parse_args()

    with open(args.bodies, "rb") as file:
        bodies = [line for line in file.read().split(b"\n") if line]
    if args.count:
        bodies = bodies[: args.count]

    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.exchange_declare(exchange=args.exchange, exchange_type="fanout", durable=False)
    channel.queue_declare(queue=args.queue, durable=True)
    channel.queue_bind(queue=args.queue, exchange=args.exchange, routing_key="")
    properties = pika.BasicProperties(delivery_mode=2)

    start = time.perf_counter()
    for body in bodies:
        # With confirms on, BlockingChannel.basic_publish returns once the broker confirmed (raises on a nack).
        channel.basic_publish(args.exchange, "", body, properties)
    elapsed = time.perf_counter() - start

    connection.close()
    print(f"{elapsed:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
