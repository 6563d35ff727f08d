// Writes every ```ts block of the READMEs and docs to generated/<source>-<n>.ts, one module each, so that
// `tsc` checks them against the real packages. A block that starts with `// not type-checked` is skipped.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('../../', import.meta.url).pathname;
const out = new URL('generated/', import.meta.url).pathname;
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const sources = [
  'README.md',
  ...readdirSync(join(root, 'packages')).map((p) => `packages/${p}/README.md`),
  ...(existsSync(join(root, 'docs')) ? readdirSync(join(root, 'docs')).map((d) => `docs/${d}`) : []),
].filter((file) => file.endsWith('.md') && existsSync(join(root, file)));

let count = 0;
for (const file of sources) {
  const text = readFileSync(join(root, file), 'utf8');
  let n = 0;
  for (const match of text.matchAll(/```ts\n([\s\S]*?)```/g)) {
    const code = match[1];
    if (code.startsWith('// not type-checked')) continue;
    const line = text.slice(0, match.index).split('\n').length;
    const name = `${relative(root, join(root, file)).replace(/[/.]/g, '_')}-${++n}.ts`;
    writeFileSync(join(out, name), `// ${file}:${line + 1}\n${code}\nexport {};\n`);
    count++;
  }
}
console.log(`[snippets] ${count} TypeScript snippets from ${sources.length} files`);
