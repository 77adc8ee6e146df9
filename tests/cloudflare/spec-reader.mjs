// A Worker written from the data-structures spec alone (its TypeScript interfaces, key patterns
// and ID rules), reading the NIMBUS_* namespaces the way a Worker author following that spec
// would. It knows nothing of how the Python side stores things: whatever it cannot find, or finds
// in another shape than the spec's, it reports.
//
//   GET /spec/user/{user_id}?paths=a.html,b.html
//       user:{user_id} -> email:{email} -> projects:{user_id} -> project:{project_id} ->
//       queue:{project_id}, batch:{project_id}:{batch_id}, page/status/logs:{project_id}:{page_id}
//       (pages: page_${md5(project_id + path).slice(0, 12)} for each path, in every project, plus
//       those the queue and the batches name), apikeys:{user_id} -> apikey:{hash}
//   GET /spec/session/{session_id}   session:{session_id}  (SessionData)
//   GET /spec/cache/{hash}           cache:{hash}          (CacheData)
//
// Each answers {"problems": [...], "read": {<key>: <value>}}: a problem is a key that is missing,
// a value that does not fit the spec's interface (a required field missing, a wrong type, a value
// outside a union, a timestamp that is not ISO 8601), or keys that disagree with each other.
// Fields beyond the spec's are allowed; `?:` fields may be left out but, when present, must have
// their type (null is not a string).

// ---- shapes -------------------------------------------------------------------------------------

const ISO_8601 = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)$/;

function describe(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return JSON.stringify(value.length > 60 ? value.slice(0, 60) + "…" : value);
  if (typeof value === "object") return "an object";
  return `${typeof value} ${JSON.stringify(value)}`;
}

const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
const isTimestamp = (v) => typeof v === "string" && ISO_8601.test(v) && !Number.isNaN(Date.parse(v));

// A shape is (value, path, out) => void; it pushes "path: what is wrong" onto out.
const leaf = (expected, ok) => (value, path, out) => {
  if (!ok(value)) out.push(`${path}: expected ${expected}, got ${describe(value)}`);
};
const string = leaf("a string", (v) => typeof v === "string");
const number = leaf("a number", (v) => typeof v === "number" && Number.isFinite(v));
const count = leaf("a count (integer >= 0)", (v) => Number.isInteger(v) && v >= 0);
const boolean = leaf("a boolean", (v) => typeof v === "boolean");
const timestamp = leaf("an ISO 8601 timestamp", isTimestamp);
const anything = () => {};
const union = (...values) =>
  leaf(values.map((v) => JSON.stringify(v)).join(" | "), (v) => values.includes(v));
const between = (low, high) =>
  leaf(`a number from ${low} to ${high}`, (v) => typeof v === "number" && v >= low && v <= high);
const matching = (pattern) => leaf(`a string matching ${pattern}`, (v) => typeof v === "string" && pattern.test(v));

function optional(shape) {
  const wrapped = (value, path, out) => shape(value, path, out);
  wrapped.optional = true;
  return wrapped;
}

const arrayOf = (item) => (value, path, out) => {
  if (!Array.isArray(value)) return out.push(`${path}: expected an array, got ${describe(value)}`);
  value.forEach((element, i) => item(element, `${path}[${i}]`, out));
};

const recordOf = (item) => (value, path, out) => {
  if (!isObject(value)) return out.push(`${path}: expected an object, got ${describe(value)}`);
  for (const [name, element] of Object.entries(value)) item(element, `${path}.${name}`, out);
};

// An interface: every listed field (unless optional) must be there with its shape; `rest` is the
// shape of an index signature's other fields (none: other fields are allowed and not checked).
const object = (fields, rest = null) => (value, path, out) => {
  if (!isObject(value)) return out.push(`${path}: expected an object, got ${describe(value)}`);
  for (const [name, shape] of Object.entries(fields)) {
    const at = path ? `${path}.${name}` : name;
    if (!(name in value)) {
      if (!shape.optional) out.push(`${at}: missing`);
    } else {
      shape(value[name], at, out);
    }
  }
  if (rest) {
    for (const [name, element] of Object.entries(value)) {
      if (!(name in fields)) rest(element, path ? `${path}.${name}` : name, out);
    }
  }
};

const PAGE_STATUS = union("uploaded", "queued", "processing", "done", "failed");

const UserData = object({ user_id: string, email: string, created: timestamp });
const ProjectsList = arrayOf(string);
const ApiKeysList = arrayOf(matching(/^sha256:[0-9a-f]{64}$/));

const ProjectData = object({
  project_id: string,
  user_id: string,
  name: string,
  created: timestamp,
  settings: object({
    tone: string,
    max_pages_per_batch: number,
    default_concurrency: number,
    ai_model: string,
    domain: string,
  }),
  usage: object({ total_pages: count, total_batches: count, last_activity: timestamp }),
});

const KeyData = object({
  user_id: string,
  created: timestamp,
  last_used: timestamp,
  active: boolean,
  name: string,
  usage: object({ requests_today: count, requests_total: count }),
});

const EmailData = object({ user_id: string, created: timestamp });

const CacheData = object({ data: anything, created: timestamp, expires: timestamp, type: string });

const SessionData = object({
  user_id: string,
  email: string,
  created: timestamp,
  expires: timestamp,
  ip: string,
  user_agent: string,
});

const Block = object({
  id: string,
  type: string,
  content: string,
  attributes: optional(recordOf(string)),
  optimized_content: optional(string),
});

const PageData = object({
  page_id: string,
  project_id: string,
  batch_id: string,
  source_path: string,
  uploaded: timestamp,
  extraction: object({
    engine: string,
    main_selector: string,
    head: object(
      { title: string, metaDescription: string, canonical: string, favicon: string },
      string,
    ),
    dimensions: object(
      { location: optional(string), brand: optional(string), service: optional(string) },
      anything,
    ),
    above_fold_blocks: arrayOf(Block),
    rest_of_page_blocks: arrayOf(Block),
    selector_map: recordOf(string),
  }),
  optimization: optional(
    object({
      completed: timestamp,
      model: string,
      confidence: number,
      changes: count,
      optimized_blocks: arrayOf(Block),
    }),
  ),
});

const BatchData = object({
  batch_id: string,
  project_id: string,
  created: timestamp,
  page_count: count,
  status: union("uploading", "queued", "processing", "completed", "failed"),
  pages: recordOf(
    object({
      status: PAGE_STATUS,
      uploaded: timestamp,
      started: optional(timestamp),
      completed: optional(timestamp),
      error: optional(string),
    }),
  ),
  summary: object({ completed: count, failed: count, pending: count, average_time_ms: number }),
});

const QueueItem = object({
  page_id: string,
  batch_id: string,
  priority: leaf("an integer from 1 to 10", (v) => Number.isInteger(v) && v >= 1 && v <= 10),
  queued_at: timestamp,
  attempts: count,
});
const QueueData = object({ items: arrayOf(QueueItem), last_processed: timestamp });

const StatusData = object({
  status: PAGE_STATUS,
  batch_id: string,
  updated: timestamp,
  processing: optional(object({ started: timestamp, current_step: string, progress: between(0, 100) })),
  result: optional(
    object({ completed: timestamp, success: boolean, changes: count, confidence: number }),
  ),
  error: optional(object({ message: string, code: string, timestamp: timestamp })),
});

const LogEntry = object({
  timestamp: timestamp,
  level: union("info", "warn", "error"),
  step: string,
  message: string,
  data: optional(anything),
  duration_ms: optional(number),
});
const LogData = object({ page_id: string, entries: arrayOf(LogEntry) });

// ---- reading ------------------------------------------------------------------------------------

class Walk {
  constructor() {
    this.problems = [];
    this.read = {};
  }

  problem(key, message) {
    this.problems.push(`${key}: ${message}`);
  }

  // The value under `key`, checked against `shape`; undefined (and a problem) if it is missing
  // or not JSON. A value that does not fit is still returned, for the cross-checks.
  async get(namespace, key, shape) {
    const raw = await namespace.get(key);
    if (raw === null) {
      this.problem(key, "missing");
      return undefined;
    }
    let value;
    try {
      value = JSON.parse(raw);
    } catch {
      this.read[key] = raw;
      this.problem(key, "not JSON");
      return undefined;
    }
    this.read[key] = value;
    const out = [];
    shape(value, "", out);
    for (const message of out) this.problem(key, message.replace(/^: /, ""));
    return value;
  }

  same(key, what, actual, expected) {
    if (actual !== expected) {
      this.problem(key, `${what} is ${describe(actual)}, expected ${describe(expected)}`);
    }
  }

  answer() {
    return Response.json({ problems: this.problems, read: this.read });
  }
}

async function md5Hex(text) {
  const digest = await crypto.subtle.digest("MD5", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// The spec's deterministic page id.
async function pageIdFor(projectId, sourcePath) {
  return `page_${(await md5Hex(projectId + sourcePath)).slice(0, 12)}`;
}

async function walkUser(env, userId, paths) {
  const walk = new Walk();
  const userKey = `user:${userId}`;
  const user = await walk.get(env.NIMBUS_USERS, userKey, UserData);
  if (user) {
    walk.same(userKey, "user_id", user.user_id, userId);
    if (typeof user.email === "string") {
      const emailKey = `email:${user.email}`;
      const email = await walk.get(env.NIMBUS_EMAILS, emailKey, EmailData);
      if (email) {
        walk.same(emailKey, "user_id", email.user_id, userId);
        if (isTimestamp(email.created) && isTimestamp(user.created) &&
            Date.parse(email.created) !== Date.parse(user.created)) {
          walk.problem(emailKey, `created ${email.created} is not the account's (${userKey}) ${user.created}`);
        }
      }
    }
  }

  const projectsKey = `projects:${userId}`;
  const projectIds = await walk.get(env.NIMBUS_USERS, projectsKey, ProjectsList);
  if (Array.isArray(projectIds)) {
    if (new Set(projectIds).size !== projectIds.length) walk.problem(projectsKey, "lists a project twice");
    for (const projectId of projectIds) {
      if (typeof projectId === "string") await walkProject(env, walk, userId, projectId, paths);
    }
  }

  const keysKey = `apikeys:${userId}`;
  const hashes = await walk.get(env.NIMBUS_USERS, keysKey, ApiKeysList);
  if (Array.isArray(hashes)) {
    if (new Set(hashes).size !== hashes.length) walk.problem(keysKey, "lists a key twice");
    for (const entry of hashes) {
      if (typeof entry !== "string" || !entry.startsWith("sha256:")) continue;
      const key = `apikey:${entry.slice("sha256:".length)}`;
      const data = await walk.get(env.NIMBUS_KEYS, key, KeyData);
      if (!data) continue;
      walk.same(key, "user_id", data.user_id, userId);
      const usage = data.usage;
      if (isObject(usage) && Number.isInteger(usage.requests_today) &&
          Number.isInteger(usage.requests_total) && usage.requests_today > usage.requests_total) {
        walk.problem(key, "usage.requests_today is more than usage.requests_total");
      }
    }
  }
  return walk.answer();
}

async function walkProject(env, walk, userId, projectId, paths) {
  const projectKey = `project:${projectId}`;
  if (!/^proj_[0-9a-f]{12}$/.test(projectId)) {
    walk.problem(`projects:${userId}`, `${describe(projectId)} is not a proj_<12 hex> id`);
  }
  const project = await walk.get(env.NIMBUS_PROJECTS, projectKey, ProjectData);
  if (project) {
    walk.same(projectKey, "project_id", project.project_id, projectId);
    if (project.user_id !== userId) {
      walk.problem(projectKey, `listed in projects:${userId} but owned by ${describe(project.user_id)}`);
    }
  }

  const queueKey = `queue:${projectId}`;
  const queue = await walk.get(env.NIMBUS_QUEUE, queueKey, QueueData);
  const items = queue && Array.isArray(queue.items) ? queue.items.filter(isObject) : [];

  // Pages come from the paths asked for, the queue and the batches; batches from the queue and
  // the pages. Read until nothing new turns up.
  const pathOf = new Map();
  for (const path of paths) pathOf.set(await pageIdFor(projectId, path), path);
  const pages = new Map();
  const batches = new Map();
  let pendingPages = [...pathOf.keys(), ...items.map((item) => item.page_id)];
  let pendingBatches = items.map((item) => item.batch_id);
  while (pendingPages.length || pendingBatches.length) {
    const nextBatches = [];
    for (const pageId of pendingPages) {
      if (typeof pageId !== "string" || pages.has(pageId)) continue;
      const page = await walk.get(env.NIMBUS_PAGES, `page:${projectId}:${pageId}`, PageData);
      pages.set(pageId, page ?? null);
      if (page && typeof page.batch_id === "string") nextBatches.push(page.batch_id);
    }
    const nextPages = [];
    for (const batchId of [...pendingBatches, ...nextBatches]) {
      if (typeof batchId !== "string" || batches.has(batchId)) continue;
      const batch = await walk.get(env.NIMBUS_BATCHES, `batch:${projectId}:${batchId}`, BatchData);
      batches.set(batchId, batch ?? null);
      if (batch && isObject(batch.pages)) nextPages.push(...Object.keys(batch.pages));
    }
    pendingPages = nextPages;
    pendingBatches = [];
  }

  const statuses = new Map();
  for (const [pageId, page] of pages) {
    const pageKey = `page:${projectId}:${pageId}`;
    const statusKey = `status:${projectId}:${pageId}`;
    const logsKey = `logs:${projectId}:${pageId}`;
    const status = await walk.get(env.NIMBUS_STATUS, statusKey, StatusData);
    statuses.set(pageId, status);
    const logs = await walk.get(env.NIMBUS_LOGS, logsKey, LogData);
    if (logs) walk.same(logsKey, "page_id", logs.page_id, pageId);
    if (page) await checkPage(walk, projectId, pageId, page, pathOf.get(pageId));
    if (status) checkStatus(walk, statusKey, status, page);
    if (page && status) walk.same(statusKey, "batch_id", status.batch_id, page.batch_id);
    const batch = page ? batches.get(page.batch_id) : null;
    if (page && batch && isObject(batch.pages)) {
      const entry = batch.pages[pageId];
      const batchKey = `batch:${projectId}:${page.batch_id}`;
      if (!isObject(entry)) walk.problem(batchKey, `pages has no entry for ${pageId} (${pageKey})`);
      else if (status) walk.same(batchKey, `pages.${pageId}.status`, entry.status, status.status);
    }
  }

  for (const [batchId, batch] of batches) {
    if (batch) checkBatch(walk, projectId, batchId, batch);
  }

  const queued = new Map();
  for (const item of items) {
    if (queued.has(item.page_id)) walk.problem(queueKey, `lists ${item.page_id} twice`);
    queued.set(item.page_id, item);
    const page = pages.get(item.page_id);
    if (page) walk.same(queueKey, `the item for ${item.page_id}: batch_id`, item.batch_id, page.batch_id);
    const status = statuses.get(item.page_id);
    if (status && !["queued", "processing"].includes(status.status)) {
      walk.problem(queueKey, `lists ${item.page_id}, whose status is ${describe(status.status)}`);
    }
  }
  for (const [pageId, status] of statuses) {
    if (status && status.status === "queued" && !queued.has(pageId)) {
      walk.problem(queueKey, `does not list ${pageId}, whose status is "queued"`);
    }
  }

  if (project && isObject(project.usage)) {
    const found = [...pages.values()].filter(Boolean).length;
    if (Number.isInteger(project.usage.total_pages) && project.usage.total_pages < found) {
      walk.problem(projectKey, `usage.total_pages is ${project.usage.total_pages}, but ${found} pages were found`);
    }
    const foundBatches = [...batches.values()].filter(Boolean).length;
    if (Number.isInteger(project.usage.total_batches) && project.usage.total_batches < foundBatches) {
      walk.problem(projectKey, `usage.total_batches is ${project.usage.total_batches}, but ${foundBatches} batches were found`);
    }
  }
}

async function checkPage(walk, projectId, pageId, page, path) {
  const key = `page:${projectId}:${pageId}`;
  walk.same(key, "page_id", page.page_id, pageId);
  walk.same(key, "project_id", page.project_id, projectId);
  if (path !== undefined) walk.same(key, "source_path", page.source_path, path);
  if (typeof page.source_path === "string") {
    const expected = await pageIdFor(projectId, page.source_path);
    if (expected !== pageId) {
      walk.problem(key, `its source_path gives the page id ${expected}, not ${pageId}`);
    }
  }
  if (typeof page.batch_id === "string" && !/^batch_\d{8}_\d{6}/.test(page.batch_id)) {
    walk.problem(key, `batch_id ${describe(page.batch_id)} is not batch_YYYYMMDD_HHMMSS`);
  }
}

function checkStatus(walk, key, status, page) {
  const required = { processing: "processing", done: "result", failed: "error" }[status.status];
  if (required && !(required in status)) walk.problem(key, `status is ${status.status} but ${required} is missing`);
  if (status.status === "done" && isObject(status.result)) {
    if (status.result.success !== true) walk.problem(key, "status is done but result.success is not true");
    const optimization = page && page.optimization;
    if (page && !isObject(optimization)) {
      walk.problem(key, "status is done but the page has no optimization");
    } else if (isObject(optimization)) {
      walk.same(key, "result.changes", status.result.changes, optimization.changes);
      walk.same(key, "result.confidence", status.result.confidence, optimization.confidence);
    }
  }
}

function checkBatch(walk, projectId, batchId, batch) {
  const key = `batch:${projectId}:${batchId}`;
  walk.same(key, "batch_id", batch.batch_id, batchId);
  walk.same(key, "project_id", batch.project_id, projectId);
  if (!isObject(batch.pages)) return;
  const entries = Object.values(batch.pages).filter(isObject);
  walk.same(key, "page_count", batch.page_count, Object.keys(batch.pages).length);
  if (!isObject(batch.summary)) return;
  const done = entries.filter((entry) => entry.status === "done").length;
  const failed = entries.filter((entry) => entry.status === "failed").length;
  walk.same(key, "summary.completed", batch.summary.completed, done);
  walk.same(key, "summary.failed", batch.summary.failed, failed);
  walk.same(key, "summary.pending", batch.summary.pending, entries.length - done - failed);
}

async function walkOne(namespace, key, shape) {
  const walk = new Walk();
  const value = await walk.get(namespace, key, shape);
  if (value && isTimestamp(value.created) && isTimestamp(value.expires) &&
      Date.parse(value.expires) <= Date.parse(value.created)) {
    walk.problem(key, "expires is not after created");
  }
  return walk.answer();
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    if (request.method !== "GET" || parts[0] !== "spec" || parts.length < 3) {
      return new Response("not found", { status: 404 });
    }
    const [, route] = parts;
    const id = parts.slice(2).join("/");
    if (route === "user") {
      const paths = url.searchParams.getAll("paths").flatMap((list) => list.split(",")).filter(Boolean);
      return walkUser(env, id, paths);
    }
    if (route === "session") return walkOne(env.NIMBUS_SESSIONS, `session:${id}`, SessionData);
    if (route === "cache") return walkOne(env.NIMBUS_CACHE, `cache:${id}`, CacheData);
    return new Response("not found", { status: 404 });
  },
};
