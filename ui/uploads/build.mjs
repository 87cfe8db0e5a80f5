// Builds the Uploads page into plugins/dataset_ops/staging/webui/ (served by the plugin at
// /dataset-ops/staging/ui/): one JS bundle and one CSS bundle with Uppy inside, no CDN.
// Run by `make install` (npm ci, then `npm run build`).
import { copyFileSync, mkdirSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const here = dirname(fileURLToPath(import.meta.url))
const out = join(here, '..', '..', 'plugins', 'dataset_ops', 'staging', 'webui')
rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })

await build({
  entryPoints: { uploads: join(here, 'src', 'main.js') },
  bundle: true,
  minify: true,
  sourcemap: false,
  format: 'iife',
  target: ['chrome120', 'firefox120', 'safari17'],
  outdir: out,
  legalComments: 'linked',
  logLevel: 'info',
})
copyFileSync(join(here, 'src', 'index.html'), join(out, 'index.html'))
