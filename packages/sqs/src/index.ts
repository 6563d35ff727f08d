/**
 * @parley/sqs: Amazon SQS as a Rasa event broker: standard queues, and FIFO queues with per-conversation order.
 * `type: sqs` in endpoints.yml; the message body is Rasa's JSON, byte for byte.
 */

export { DEAD_LETTER_ATTRIBUTE } from './dead-letters.js';
export { resolveSqsSettings, type SqsOptions, type SqsSettings } from './options.js';
export {
  fromEndpointConfig,
  MAX_ATTRIBUTES,
  MAX_MESSAGE_BYTES,
  type SqsBrokerOptions,
  type SqsClient,
  sqsBroker,
  sqsDriver,
} from './sqs.js';
