// A tiny static file server for the browser tests (node:http, no dependencies).
//
//   import { serve } from './serve.mjs';
//   const server = await serve('dist');   // { url: 'http://127.0.0.1:PORT/', close() }
//
// Also runnable: `node tests/browser/serve.mjs DIR` prints the URL and serves until killed.
import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Content types by (lower-case) file extension; anything else is served as octet-stream. */
const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.safetensors': 'application/octet-stream',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.map': 'application/json; charset=utf-8',
};

export function mimeType(file) {
  return MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/**
 * Maps a request URL path onto a file under `root`, or returns null when the path is not
 * acceptable (bad encoding, NUL bytes, or anything that would leave `root`).
 */
function resolveUnder(root, urlPath) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  // Resolve against the root, then check the result is still inside it.
  const file = path.resolve(root, '.' + path.posix.normalize('/' + decoded));
  if (file !== root && !file.startsWith(root + path.sep)) return null;
  return file;
}

/**
 * Serves `rootDir` on 127.0.0.1 on a free port.
 *
 * With `hub: true` it stands in for another site such as the Hugging Face Hub: every answer
 * allows pages from other origins (CORS), every request path is recorded in `requests`, and three
 * path prefixes misbehave on purpose: `/__nocors/` answers without CORS headers, `/__slow/`
 * trickles the file out (to cancel a download), `/__truncated/` promises the whole file and
 * sends half.
 * @param {string} rootDir
 * @param {{hub?: boolean}} options
 * @returns {Promise<{url: string, requests: string[], close: () => Promise<void>}>}
 */
export async function serve(rootDir, { hub = false } = {}) {
  const requests = [];
  // The real path, so that symbolic links inside the tree cannot point outside it.
  const root = await realpath(path.resolve(rootDir)).catch(() => path.resolve(rootDir));
  const rootStat = await stat(root).catch(() => null);
  if (!rootStat?.isDirectory()) throw new Error(`serve: ${root} is not a directory`);

  const server = createServer(async (req, res) => {
    const send = (status, text) => {
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : text);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');

    // Only the path matters; the query string and fragment are ignored. The raw path is checked
    // for `..` segments before URL normalisation could hide them.
    let rawPath = (req.url ?? '/').split(/[?#]/, 1)[0];
    if (!rawPath.startsWith('/')) return send(400, 'bad request\n');
    let mode = 'plain';
    if (hub) {
      requests.push(rawPath);
      const special = rawPath.match(/^\/__(nocors|slow|truncated)(\/.*)$/);
      if (special) [, mode, rawPath] = special;
      if (mode !== 'nocors') {
        res.setHeader('access-control-allow-origin', '*');
        res.setHeader('access-control-expose-headers', 'content-length');
      }
    }
    if (rawPath.split('/').some((seg) => { try { return decodeURIComponent(seg) === '..'; } catch { return true; } })) {
      return send(403, 'forbidden\n');
    }
    let file = resolveUnder(root, rawPath);
    if (file === null) return send(403, 'forbidden\n');

    let info = await stat(file).catch(() => null);
    if (info?.isDirectory()) {
      file = path.join(file, 'index.html');
      info = await stat(file).catch(() => null);
    }
    if (!info?.isFile()) return send(404, 'not found\n');
    const real = await realpath(file).catch(() => null);
    if (real === null || !real.startsWith(root + path.sep)) return send(403, 'forbidden\n');

    res.writeHead(200, {
      'content-type': mimeType(file),
      'content-length': info.size,
      // Tests rebuild dist/ between runs: never let the browser reuse a stale wasm.
      'cache-control': 'no-store',
    });
    if (req.method === 'HEAD') return res.end();
    if (mode === 'truncated') {
      const half = createReadStream(file, { start: 0, end: Math.max(0, Math.floor(info.size / 2) - 1) });
      half.on('data', (chunk) => res.write(chunk));
      half.on('end', () => setTimeout(() => res.destroy(), 50));
      return;
    }
    if (mode === 'slow') {
      const stream = createReadStream(file, { highWaterMark: 16 * 1024 });
      stream.on('data', (chunk) => {
        stream.pause();
        res.write(chunk);
        setTimeout(() => stream.resume(), 200);
      });
      stream.on('end', () => res.end());
      res.on('close', () => stream.destroy());
      return;
    }
    const stream = createReadStream(file);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

// `node serve.mjs DIR`: serve until interrupted.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2] ?? 'dist';
  const server = await serve(dir);
  console.log(server.url);
  const stop = () => server.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
