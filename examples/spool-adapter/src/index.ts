/**
 * A maildir-style spool directory as a Parley broker: the complete example of docs/writing-an-adapter.md. A
 * published adapter exports the same names, and `type: '<its package name>'` in endpoints.yml loads it.
 */
export {
  fromEndpointConfig,
  type SpoolBrokerOptions,
  type SpoolClient,
  spoolBroker,
  spoolDriver,
} from './spool.js';
