// The Uploads page of dataset-ops, served at /dataset-ops/staging/ui/ and shown in the Airflow UI
// (Browse > Uploads). Uppy's Dashboard takes the files; its AWS S3 plugin sends them as multipart
// uploads through the API's Companion-style routes (/dataset-ops/staging/s3/multipart...), the parts
// straight to S3 on presigned URLs; Golden Retriever keeps each upload's id across a page reload, so
// re-selecting the file resumes it from the parts already stored. The API calls carry the Airflow
// UI's cookie (same origin).
import AwsS3 from '@uppy/aws-s3'
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import GoldenRetriever from '@uppy/golden-retriever'
import '@uppy/core/css/style.min.css'
import '@uppy/dashboard/css/style.min.css'
import './style.css'

const MiB = 1024 * 1024
const MB = 1e6
const API = new URL('../', window.location.href) // /dataset-ops/staging/
const apiUrl = (path) => new URL(path, API).toString()
const $ = (id) => document.getElementById(id)

// The CLI's part size rule (dataset_ops.staging.upload.plan.choose_part_size).
function partSize(size) {
  let part = size < 1024 * MiB ? 16 * MiB : size < 8192 * MiB ? 64 * MiB : 128 * MiB
  if (Math.ceil(size / part) > 10000) part = Math.ceil(Math.ceil(size / 10000) / MiB) * MiB
  return part
}

const encodeName = (name) => name.split('/').map(encodeURIComponent).join('/')
function formatSize(bytes) {
  if (bytes == null) return ''
  if (bytes < 1000) return `${bytes} B`
  if (bytes < MB) return `${(bytes / 1000).toFixed(1)} kB`
  return `${(bytes / MB).toFixed(1)} MB`
}
function formatEta(seconds) {
  if (!Number.isFinite(seconds)) return ''
  const s = Math.max(0, Math.round(seconds))
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}
function cell(text, className) {
  const td = document.createElement('td')
  td.textContent = text ?? ''
  if (className) td.className = className
  return td
}

// --- the API ------------------------------------------------------------------------------------
function notice(message, kind = 'error') {
  const box = $('notice')
  box.hidden = !message
  box.className = kind
  box.replaceChildren()
  if (!message) return
  box.append(message)
  if (kind === 'login') {
    const link = document.createElement('a')
    link.href = '/'
    link.target = '_top'
    link.textContent = ' Log in'
    box.append(link)
  }
}

async function call(path, options = {}) {
  const response = await fetch(apiUrl(path), {
    credentials: 'same-origin',
    ...options,
    headers: { Accept: 'application/json', ...(options.body ? { 'Content-Type': 'application/json' } : {}) },
  })
  if (response.status === 401) {
    notice('Log in to Airflow first.', 'login')
    throw Object.assign(new Error('not logged in'), { shown: true }) // shown: callers keep this notice
  }
  const body = await response.json().catch(() => ({}))
  if (response.status === 403) {
    notice('You do not have permission to do this (Airflow permissions on the DAG staged_upload_validation).')
    throw Object.assign(new Error(body.detail || 'forbidden'), { shown: true })
  }
  if (!response.ok) throw new Error(describe(body) || `${response.status} ${response.statusText}`)
  return body
}

function describe(body) {
  if (typeof body.detail === 'string') return body.detail
  if (Array.isArray(body.detail)) return body.detail.map((e) => `${(e.loc || []).join('.')}: ${e.msg}`).join('; ')
  return ''
}

// Uppy's Companion client reports only "Companion request failed: <status text>": keep the API's
// own reason for each refused request, to show it beside the file.
const refusals = new Map()
const nativeFetch = window.fetch.bind(window)
window.fetch = async (input, init) => {
  const response = await nativeFetch(input, init)
  const url = String(typeof input === 'string' ? input : input.url)
  if (!response.ok && url.startsWith(apiUrl('s3/'))) {
    const body = await response.clone().json().catch(() => ({}))
    let filename = null
    try {
      filename = JSON.parse(init?.body || '{}').filename ?? null
    } catch {}
    let reason = describe(body) || `${response.status} ${response.statusText}`
    if (response.status === 401) reason = 'log in to Airflow first'
    if (response.status === 403)
      reason = 'you do not have permission to upload (it needs permission to trigger staged_upload_validation)'
    refusals.set(filename ?? url, reason)
  }
  return response
}

// --- options ------------------------------------------------------------------------------------
let ruleSets = []
async function loadRuleSets() {
  const { rule_sets: sets } = await call('rule-sets')
  ruleSets = sets
  const select = $('data-type')
  select.replaceChildren(
    ...sets.map((set) => new Option(set.name, set.name)),
    new Option('custom (rules below)', 'custom'),
  )
  select.value = sets.some((s) => s.name === 'jsonl') ? 'jsonl' : sets[0]?.name || 'custom'
  showRules()
}
function showRules() {
  const type = $('data-type').value
  $('rules-label').hidden = type !== 'custom'
  const set = ruleSets.find((s) => s.name === type)
  $('rule-summary').textContent = set
    ? `${set.description || set.name} Formats: ${set.rules.allowed_formats.join(', ')}.`
    : 'Custom: the rules you give are kept with the file and used to validate it.'
}
$('data-type').addEventListener('change', showRules)

// The meta sent with each new upload (AwsS3 `allowedMetaFields`); null when the rules are not JSON.
function uploadMeta(file) {
  const meta = { data_type: $('data-type').value, description: $('description').value, size: file.size }
  if (meta.data_type === 'custom') {
    try {
      // as JSON text: Uppy's Companion client sends metadata values as strings
      meta.rules = JSON.stringify(JSON.parse($('rules').value))
    } catch (err) {
      notice(`The rules are not valid JSON: ${err.message}`)
      return null
    }
  }
  return meta
}

// --- Uppy ---------------------------------------------------------------------------------------
const uppy = new Uppy({
  id: 'dataset-ops-uploads',
  autoProceed: false,
  onBeforeUpload(files) {
    const next = {}
    for (const [id, file] of Object.entries(files)) {
      if (file.s3Multipart) {
        next[id] = file // a resumed upload keeps the meta it started with
        continue
      }
      const meta = uploadMeta(file)
      if (meta == null) return false
      next[id] = { ...file, meta: { ...file.meta, ...meta } }
    }
    notice('')
    return next
  },
})
  .use(Dashboard, {
    target: '#dashboard',
    inline: true,
    height: 340,
    width: '100%',
    proudlyDisplayPoweredByUppy: false,
    showProgressDetails: true,
    note: 'Files of any size; an interrupted upload resumes when the same file is selected again.',
  })
  .use(AwsS3, {
    endpoint: API.toString().replace(/\/$/, ''),
    shouldUseMultipart: true,
    getChunkSize: (file) => partSize(file.size),
    limit: 4, // parts in flight (shared by all files), as the CLI's --parallel
    allowedMetaFields: ['data_type', 'description', 'size', 'rules'],
  })
  .use(GoldenRetriever)

// --- transfers: progress, MB/s and ETA per file --------------------------------------------------
const transfers = new Map() // file id -> {name, samples: [[ms, bytes]], state, bytes, total}
function transfer(file) {
  if (!transfers.has(file.id)) transfers.set(file.id, { name: file.name, samples: [], state: 'waiting', bytes: 0, total: file.size })
  return transfers.get(file.id)
}
function speedOf(t) {
  const [first, last] = [t.samples[0], t.samples[t.samples.length - 1]]
  if (!first || last[0] - first[0] < 250) return null
  return ((last[1] - first[1]) / (last[0] - first[0])) * 1000 // bytes per second
}
function renderTransfers() {
  const rows = [...transfers.values()].map((t) => {
    const speed = t.state === 'uploading' ? speedOf(t) : null
    const tr = document.createElement('tr')
    tr.dataset.testid = `transfer-${t.name}`
    const bar = document.createElement('progress')
    bar.max = t.total || 1
    bar.value = t.bytes
    const progress = cell(`${t.total ? ((100 * t.bytes) / t.total).toFixed(1) : 0}% `)
    progress.prepend(bar)
    progress.dataset.testid = `progress-${t.name}`
    const speedCell = cell(speed == null ? '' : `${(speed / MB).toFixed(1)} MB/s`)
    speedCell.dataset.testid = `speed-${t.name}`
    const eta = cell(speed ? formatEta((t.total - t.bytes) / speed) : '')
    eta.dataset.testid = `eta-${t.name}`
    const state = cell(t.state, t.state === 'error' ? 'error' : '')
    state.dataset.testid = `state-${t.name}`
    tr.append(cell(t.name), state, progress, speedCell, eta)
    return tr
  })
  $('transfers').tBodies[0].replaceChildren(...rows)
}
uppy.on('upload-progress', (file, progress) => {
  const t = transfer(file)
  t.state = 'uploading'
  t.bytes = progress.bytesUploaded
  t.total = progress.bytesTotal ?? file.size
  const now = performance.now()
  t.samples.push([now, t.bytes])
  while (t.samples.length > 2 && now - t.samples[0][0] > 5000) t.samples.shift() // a 5 s window
  renderTransfersSoon()
})
// Progress events come for every part in flight, tens a second: the table is redrawn at most
// four times a second (each redraw costs layout and paint in the browser, CPU the upload needs).
let redraw = null
function renderTransfersSoon() {
  if (redraw == null) redraw = setTimeout(() => { redraw = null; renderTransfers() }, 250)
}
uppy.on('upload-success', (file) => {
  const t = transfer(file)
  Object.assign(t, { state: 'Uploaded', bytes: t.total })
  retries.delete(file.id)
  if ($('notice').className === 'info') notice('') // "select again to resume", "resuming": done
  renderTransfers()
  refreshFiles()
})
const retries = new Map()
uppy.on('upload-error', (file, error) => {
  const t = transfer(file)
  const reason = refusals.get(file.name) || [...refusals.values()].pop()
  refusals.clear()
  t.state = 'error'
  renderTransfers()
  if (reason) {
    notice(`${file.name}: ${reason}`)
    return
  }
  // no answer from the API or S3 (a dropped connection): resume when back online, a few times
  const tries = (retries.get(file.id) || 0) + 1
  retries.set(file.id, tries)
  if (tries > 5) {
    notice(`${file.name}: ${error?.message || 'upload failed'}; press retry to resume`)
    return
  }
  notice(`${file.name}: connection lost, resuming (try ${tries} of 5)`, 'info')
  const resume = () => setTimeout(() => uppy.retryUpload(file.id), 1000 * 2 ** (tries - 1))
  if (navigator.onLine) resume()
  else window.addEventListener('online', resume, { once: true })
})
uppy.on('restored', () => {
  const ghosts = uppy.getFiles().filter((f) => f.isGhost)
  if (ghosts.length)
    notice(
      `Select ${ghosts.map((f) => f.name).join(', ')} again to resume ` +
        '(the browser cannot reopen a file after a reload; the parts already sent are kept).',
      'info',
    )
})

// --- staged files ---------------------------------------------------------------------------------
async function refreshFiles() {
  const status = $('status-filter').value
  let listing
  try {
    listing = await call(`staged-files${status ? `?status=${encodeURIComponent(status)}` : ''}`)
  } catch (err) {
    if (!err.shown) notice(`Listing the staged files failed: ${err.message}`)
    return
  }
  $('files-total').textContent = `${listing.total_files} file(s)`
  const rows = listing.files.map((f) => {
    const tr = document.createElement('tr')
    tr.dataset.testid = `row-${f.name}`
    const status = cell(f.status, `status-${f.status}`)
    status.dataset.testid = `status-${f.name}`
    const actions = document.createElement('td')
    if (f.status === 'fresh' || f.versions > 0) {
      const link = document.createElement('a')
      link.href = apiUrl(`download-file/${encodeName(f.name)}`)
      link.textContent = 'Download'
      link.dataset.testid = `download-${f.name}`
      if (f.status === 'fresh') actions.append(link)
    }
    if (f.status === 'failed') {
      const button = document.createElement('button')
      button.type = 'button'
      button.className = 'secondary'
      button.textContent = 'Report'
      button.dataset.testid = `report-${f.name}`
      button.addEventListener('click', () => showReport(f.name))
      actions.append(button)
    }
    tr.append(
      cell(f.name),
      status,
      cell(formatSize(f.file_size)),
      cell(f.data_type),
      cell(f.version ?? ''),
      cell((f.updated_at || '').replace('T', ' ').replace('+00:00', ' UTC')),
      cell(f.duplicate_of ? `duplicate of ${f.duplicate_of}` : f.error_summary, f.status === 'failed' ? 'error' : ''),
      actions,
    )
    return tr
  })
  $('files').tBodies[0].replaceChildren(...rows)
}
$('status-filter').addEventListener('change', refreshFiles)

let reportName = null
async function showReport(name) {
  const info = await call(`file-info/${encodeName(name)}`)
  reportName = name
  $('report-name').textContent = name
  const report = info.report || { errors: [] }
  $('report-summary').textContent =
    `${report.errors_found ?? report.errors.length} error(s); ${report.records ?? '?'} record(s) read; ` +
    `data type ${info.data_type}.`
  $('report-errors').replaceChildren(
    ...report.errors.map((e) => {
      const tr = document.createElement('tr')
      tr.append(cell(e.line ?? ''), cell(e.offset ?? ''), cell(e.reason, 'error'))
      return tr
    }),
  )
  $('retry-result').textContent = ''
  $('report').hidden = false
}
$('retry').addEventListener('click', async () => {
  let overrides
  try {
    overrides = JSON.parse($('retry-overrides').value || '{}')
  } catch (err) {
    $('retry-result').textContent = `Not valid JSON: ${err.message}`
    return
  }
  try {
    const run = await call(`retry-failed-file/${encodeName(reportName)}`, {
      method: 'POST',
      body: JSON.stringify({ rule_overrides: overrides }),
    })
    $('retry-result').textContent = `Retry started: ${run.dag_run_id}`
  } catch (err) {
    $('retry-result').textContent = `Refused: ${err.message}`
  }
})

// --- start ----------------------------------------------------------------------------------------
loadRuleSets().catch((err) => err.shown || notice(`Loading the rule sets failed: ${err.message}`))
refreshFiles()
setInterval(() => document.visibilityState === 'visible' && refreshFiles(), 2000)
window.datasetOpsUppy = uppy // for the browser tests and the curious
