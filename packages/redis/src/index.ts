/**
 * @parley/redis: Redis Streams as a Rasa event broker: a durable, replayable event log with consumer groups.
 * `type: redis` in endpoints.yml; the entry body is Rasa's JSON, byte for byte.
 */

export {
  deadLetterKey,
  hashTag,
  type RedisConnection,
  type RedisOptions,
  type RedisSettings,
  resolveRedisSettings,
} from './options.js';
export {
  fromEndpointConfig,
  type RedisBrokerOptions,
  type RedisClient,
  redisBroker,
  redisDriver,
} from './redis.js';
