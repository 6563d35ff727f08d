#!/usr/bin/python3
"""Publishes Rasa tracker events exactly as Rasa's PikaEventBroker does (rasa/core/brokers/pika.py).

Rasa runs aio-pika; this peer reproduces its observable behaviour with pika's BlockingConnection:

- topology: a fanout exchange declared with aio-pika's defaults (durable=False, auto_delete=False), each queue
  declared durable=True (no arguments) and bound with routing key "";
- publisher confirms (aio-pika opens its channels with publisher_confirms=True);
- per event: body = {"sender_id": sender_id} updated with the event (tracker_store.py), serialised with
  json.dumps and encoded as UTF-8, published to the exchange with routing key "", delivery_mode=2 and
  app_id=os.environ.get("RASA_ENVIRONMENT"), no content_type, no headers.

Usage: rasa_publisher.py --url URL --exchange NAME --queue Q [--queue Q2 ...] [--list-sender ID] [FILE ...]
A FILE is a tracker dump ({"sender_id": ..., "events": [...]}) or a bare event list, which gets --list-sender.
--exchange-durable declares the exchange durable: a deliberately wrong declaration, to prove mismatches fail.
Prints "published N" on success; on a channel error prints "channel error CODE TEXT" to stderr and exits 3.
"""
import argparse
import json
import os
import sys

import pika
import pika.exceptions


def events_of(path, list_sender):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if isinstance(data, list):
        if list_sender is None:
            raise SystemExit(f"{path} is a bare event list: give --list-sender")
        return list_sender, data
    return data["sender_id"], data["events"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--exchange", default="rasa-exchange")
    parser.add_argument("--queue", action="append", dest="queues")
    parser.add_argument("--list-sender", default=None)
    parser.add_argument("--exchange-durable", action="store_true")
    parser.add_argument("files", nargs="*")
    args = parser.parse_intermixed_args()
    queues = args.queues or ["rasa_core_events"]

    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    published = 0
    try:
        channel = connection.channel()
        # PikaEventBroker._set_up_exchange: declare_exchange(name, type=FANOUT), aio-pika defaults otherwise.
        channel.exchange_declare(
            exchange=args.exchange,
            exchange_type="fanout",
            durable=args.exchange_durable,
            auto_delete=False,
            internal=False,
        )
        # PikaEventBroker._set_up_exchange: declare_queue(queue_name, durable=True); queue.bind(exchange, "").
        for queue in queues:
            channel.queue_declare(queue=queue, durable=True)
            channel.queue_bind(queue=queue, exchange=args.exchange, routing_key="")
        channel.confirm_delivery()

        rasa_environment = os.environ.get("RASA_ENVIRONMENT")
        for path in args.files:
            sender_id, events = events_of(path, args.list_sender)
            for event in events:
                # tracker_store.py: body = {"sender_id": sender_id}; body.update(event.as_dict())
                body = {"sender_id": sender_id}
                body.update(event)
                # PikaEventBroker._message: Message(bytes(json.dumps(event), "utf-8"), headers=None,
                # app_id=self.rasa_environment, delivery_mode=PERSISTENT); published with routing key "".
                channel.basic_publish(
                    exchange=args.exchange,
                    routing_key="",
                    body=json.dumps(body).encode("utf-8"),
                    properties=pika.BasicProperties(delivery_mode=2, app_id=rasa_environment, headers=None),
                )
                published += 1
    except pika.exceptions.ChannelClosedByBroker as error:
        print(f"channel error {error.reply_code} {error.reply_text}", file=sys.stderr)
        sys.exit(3)
    finally:
        if connection.is_open:
            connection.close()
    print(f"published {published}")


if __name__ == "__main__":
    main()
