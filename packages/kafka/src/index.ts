/**
 * @parley/kafka: Rasa's Kafka event broker, on kafkajs: the same endpoints.yml keys, the same message bytes, key
 * and header as Rasa's `KafkaEventBroker`, with consumer groups for reading. `type: kafka` in endpoints.yml.
 */

export { type KafkaDriverHooks, mskIamTokenProvider } from './client.js';
export {
  fromEndpointConfig,
  type KafkaBrokerOptions,
  type KafkaClient,
  kafkaBroker,
  kafkaDriver,
} from './kafka.js';
export {
  type KafkaOptions,
  type KafkaSasl,
  type KafkaSettings,
  type KafkaTls,
  resolveKafkaSettings,
} from './options.js';
