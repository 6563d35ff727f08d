/** vitest globalSetup: the RabbitMQ node of the tests' own (see own-node.ts), once per run. */
import type { TestProject } from 'vitest/node';
import { type OwnNode, startOwnNode, stopOwnNode } from './own-node.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The node, or why it could not be started (the tests that need it fail with that reason). */
    ownNode: OwnNode | { readonly error: string };
  }
}

export default async function setup(project: TestProject): Promise<() => void> {
  const started = Date.now();
  let node: OwnNode | undefined;
  try {
    node = await startOwnNode();
    console.info(
      `[amqp tests] own RabbitMQ node ${node.node} on port ${node.port} (${Date.now() - started} ms)`,
    );
    project.provide('ownNode', node);
  } catch (error) {
    project.provide('ownNode', { error: error instanceof Error ? error.message : String(error) });
  }
  return () => {
    if (node) stopOwnNode(node);
  };
}
