/**
 * Rasa's file broker (`type: file`). Its parts live in `file/`: the driver (`driver.ts`), a group's tailer
 * (`tailer.ts`) reading the log (`log-reader.ts`), the group's lock (`lock.ts`) and durable offset
 * (`offsets.ts`), the dead-letter file (`dead-letters.ts`) and redrive batches (`redrive.ts`).
 */
export { type FileDeadLetter, readDeadLetters } from './file/dead-letters.js';
export { type FileBrokerClient, type FileBrokerOptions, fileBroker, fileDriver } from './file/driver.js';
export { isRetryableFileError } from './file/io.js';
