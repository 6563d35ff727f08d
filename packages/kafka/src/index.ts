/**
 * @parley/kafka: Rasa's Kafka event broker, on kafkajs: the same endpoints.yml keys, the same message bytes, key
 * and header as Rasa's `KafkaEventBroker`, with consumer groups for reading. `type: kafka` in endpoints.yml.
 */

export {
  fromEndpointConfig,
  type KafkaBrokerOptions,
  type KafkaClient,
  type KafkaDriverHooks,
  kafkaBroker,
  kafkaDriver,
  mskIamTokenProvider,
} from './kafka.js';
export {
  type KafkaOptions,
  type KafkaSasl,
  type KafkaSettings,
  type KafkaTls,
  resolveKafkaSettings,
} from './options.js';
