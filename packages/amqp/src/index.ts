/**
 * @parley/amqp: Rasa's pika (RabbitMQ) event broker for Node. `type: pika` (or `rabbitmq`, `amqp`) in
 * endpoints.yml, with Rasa's keys and defaults; wire-compatible with Rasa in both directions.
 */
export {
  type AmqpBrokerOptions,
  type AmqpClient,
  amqpBroker,
  amqpDriver,
  fromEndpointConfig,
} from './amqp.js';
export { type AmqpOptions, type AmqpSettings, redactUrl, resolveAmqpSettings } from './options.js';
export { queueOf } from './wire.js';
