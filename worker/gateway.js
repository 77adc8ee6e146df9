// The Nimbus gateway Worker: Workers KV and D1 for a Nimbus control plane, through bindings.
//
// One signed request carries a list of operations that run in order; each gets a result or a
// typed error. An operation runs only if the operations it requires (by default: every earlier
// one) succeeded, and may take its keys from an earlier result, so that a save (the KV write,
// then the metadata statements), a page with its objects (the select, then the KV reads of its
// rows) and an API key with its user are each one request. Protocol version 1:
//
//   POST /v1/run   body {"operations": [op, ...]}
//     -> 200 {"results": [{"ok": true, "value": ...} | {"ok": false, "error": {type, message}}]}
//   GET  /v1/status -> 200 {"version": 1, "plan", "limits", "namespaces": [bound KV bindings],
//                           "unbound": [named in NIMBUS_KV_NAMESPACES but not bound], "d1": bool}
//
// Operations (`ns` names a KV binding listed in NIMBUS_KV_NAMESPACES; values travel as
// {"text": "..."} or, for bytes that are not UTF-8, {"base64": "..."}):
//
//   {"op": "kv.get", "ns", "keys": [...] | "keys_from": ref}
//       -> {"entries": {key: {"value", "metadata", "expiration"?}}} (missing keys absent)
//   {"op": "kv.put", "ns", "items": [{"key", "value", "ttl"?, "metadata"?}]} -> {"count"}
//   {"op": "kv.delete", "ns", "keys": [...]} -> {"existed": [keys that held a value]}
//   {"op": "kv.list", "ns", "prefix"?, "cursor"?, "limit"?} -> {"keys": [...], "cursor"}
//   {"op": "kv.incr", "ns", "key", "amount"?, "ttl"?} -> {"value", "expiration"}
//   {"op": "kv.list_edit", "ns", "key", "change": "add"|"remove"|"clear", "item"?, "owner"?}
//       -> {"changed": true | false | null}   (a JSON array of strings, owners in _auth)
//   {"op": "d1.batch", "statements": [{"sql", "params"}]}
//       -> {"results": [{"rows": [...], "changes", "last_row_id"}]}   (one transaction)
//
//   ref = {"op": <index of an earlier operation>, "template": "page:{project_id}:{id}",
//          "statement"?: <index, for a d1.batch>}
//   fills the template from each row of that statement, or from each JSON value that a kv.get
//   returned; a record missing a field gives no key. "requires": [indices] narrows the
//   operations that must have succeeded (default: all earlier ones).
//
// Counters: kv.incr is atomic. The count lives in the D1 table _nimbus_counters (an UPSERT ...
// RETURNING), seeded from the KV value on first use and copied back to KV after each change for
// Workers that read it; the copy is best effort (KV takes one write per second per key).
//
// Authentication: X-Nimbus-Timestamp (unix seconds) and X-Nimbus-Signature ("v1=" + hex
// HMAC-SHA256 over "METHOD\nPATH\nTIMESTAMP\nSHA256_HEX(BODY)") with NIMBUS_GATEWAY_SECRET or,
// during a rotation, NIMBUS_GATEWAY_SECRET_PREVIOUS. A timestamp more than 300 s away is stale;
// a signature already used is refused (kept in D1 table _nimbus_gateway_replay for the window).
//
// Limits per request (Workers' per-invocation limits; NIMBUS_GATEWAY_PLAN = "free" | "paid"):
// body size (NIMBUS_GATEWAY_MAX_BODY_BYTES, default 32 MiB), operations (100), KV operations
// (1,000 on both plans; a bulk read of up to 100 keys is one) and D1 statements (50 free,
// 1,000 paid; the replay check takes one). A request over a limit known before it runs is
// refused whole (4xx, nothing written); one that reaches a limit while running gets a "limit"
// error on the operation that would pass it, and the operations after it are skipped.

const VERSION = 1;
const WINDOW_SECONDS = 300;
const MAX_OPERATIONS = 100;
const DEFAULT_MAX_BODY = 32 * 1024 * 1024;
const BULK_GET = 100;
const PLANS = {
  free: { kv_operations: 1000, d1_statements: 50 },
  paid: { kv_operations: 1000, d1_statements: 1000 },
};
const OPERATIONS = new Set(["kv.get", "kv.put", "kv.delete", "kv.list", "kv.incr", "kv.list_edit", "d1.batch"]);
const SCHEMA = [
  "CREATE TABLE IF NOT EXISTS _nimbus_counters (namespace TEXT NOT NULL, key TEXT NOT NULL, value INTEGER NOT NULL, expires_at REAL, PRIMARY KEY (namespace, key))",
  "CREATE TABLE IF NOT EXISTS _nimbus_gateway_replay (signature TEXT PRIMARY KEY, expires_at REAL NOT NULL)",
];

class GatewayError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

class OperationError extends Error {
  constructor(type, message) {
    super(message);
    this.type = type;
  }
}

function refuse(status, type, message) {
  return Response.json({ error: { type, message } }, { status });
}

// -- authentication ------------------------------------------------------------------------

const encoder = new TextEncoder();

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256Hex(bytes) {
  return hex(await crypto.subtle.digest("SHA-256", bytes));
}

async function hmacHex(secret, message) {
  const key = await crypto.subtle.importKey(
    "raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"],
  );
  return hex(await crypto.subtle.sign("HMAC", key, encoder.encode(message)));
}

function sameText(a, b) {
  // Constant time for equal lengths; lengths are public (always 64 hex digits here).
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  if (x.length !== y.length) return false;
  if (crypto.subtle.timingSafeEqual) return crypto.subtle.timingSafeEqual(x, y);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ y[i];
  return diff === 0;
}

async function authenticate(request, env, body, now) {
  const secrets = [env.NIMBUS_GATEWAY_SECRET, env.NIMBUS_GATEWAY_SECRET_PREVIOUS].filter(Boolean);
  if (!secrets.length) throw new GatewayError(500, "misconfigured", "NIMBUS_GATEWAY_SECRET is not set");
  const stamp = request.headers.get("x-nimbus-timestamp");
  const header = request.headers.get("x-nimbus-signature");
  if (!stamp || !header) throw new GatewayError(401, "unsigned", "the request is not signed");
  if (!/^\d{1,12}$/.test(stamp)) throw new GatewayError(401, "unsigned", "X-Nimbus-Timestamp must be unix seconds");
  if (Math.abs(now - Number(stamp)) > WINDOW_SECONDS) {
    throw new GatewayError(401, "stale", `the timestamp is more than ${WINDOW_SECONDS} s from the gateway's clock`);
  }
  const match = /^v1=([0-9a-f]{64})$/.exec(header);
  if (!match) throw new GatewayError(401, "bad_signature", "X-Nimbus-Signature must be v1=<64 hex digits>");
  const url = new URL(request.url);
  const message = `${request.method}\n${url.pathname}\n${stamp}\n${await sha256Hex(body)}`;
  let valid = false;
  for (const secret of secrets) {
    if (sameText(await hmacHex(secret, message), match[1])) valid = true;
  }
  if (!valid) throw new GatewayError(401, "bad_signature", "the signature does not match");
  return match[1];
}

async function withSchema(db, run) {
  try {
    return await run();
  } catch (error) {
    if (!/no such table: _nimbus_/.test(String(error && error.message))) throw error;
    await db.batch(SCHEMA.map((sql) => db.prepare(sql)));
    return await run();
  }
}

async function refuseReplay(env, signature, now, spare) {
  const db = env.DB;
  const inserted = await withSchema(db, () =>
    db
      .prepare("INSERT INTO _nimbus_gateway_replay (signature, expires_at) VALUES (?, ?) ON CONFLICT (signature) DO NOTHING")
      .bind(signature, now + 2 * WINDOW_SECONDS)
      .run(),
  );
  if (!inserted.meta.changes) throw new GatewayError(401, "replayed", "this signature was used already");
  let used = 1;
  if (spare >= 2 && Math.random() < 0.01) {
    // now and then (when the request leaves room in the D1 budget), forget used signatures and counts of windows that have ended
    await db.batch([
      db.prepare("DELETE FROM _nimbus_gateway_replay WHERE expires_at < ?").bind(now),
      db.prepare("DELETE FROM _nimbus_counters WHERE expires_at IS NOT NULL AND expires_at < ?").bind(now),
    ]);
    used += 2;
  }
  return used;
}

// -- values --------------------------------------------------------------------------------

function bytesToBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function toWire(buffer) {
  const bytes = new Uint8Array(buffer);
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes) };
  } catch {
    return { base64: bytesToBase64(bytes) };
  }
}

function fromWire(value, where) {
  if (value && typeof value.text === "string") return value.text;
  if (value && typeof value.base64 === "string") {
    const binary = atob(value.base64);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }
  throw new OperationError("invalid", `${where}: a value is {"text": ...} or {"base64": ...}`);
}

function param(value, where) {
  if (value === null || typeof value === "string" || typeof value === "number") return value;
  if (typeof value === "boolean") return value ? 1 : 0;
  if (value && typeof value.base64 === "string") return fromWire(value, where);
  throw new OperationError("invalid", `${where}: unsupported parameter ${JSON.stringify(value)}`);
}

function column(value) {
  if (value instanceof ArrayBuffer) return { base64: bytesToBase64(new Uint8Array(value)) };
  if (Array.isArray(value)) return { base64: bytesToBase64(Uint8Array.from(value)) };
  return value;
}

// -- expiries ------------------------------------------------------------------------------
//
// A binding's read does not tell a key's expiry, so a write with a TTL keeps it in the key's
// metadata: {"__expires": <unix seconds>} when the write had no metadata of its own, or its
// metadata plus "__expires" and "__metadata": 1. Reads take them out again.

function writeOptions(metadata, ttl, now) {
  // KV takes the TTL relative (an absolute expiration must be 60 s ahead of its own clock);
  // the metadata keeps the expiry it means, for reads.
  if (ttl === null) return metadata === null ? {} : { metadata };
  const expires = Math.round(now) + ttl;
  const stored = metadata === null ? { __expires: expires } : { ...metadata, __expires: expires, __metadata: 1 };
  return { expirationTtl: ttl, metadata: stored };
}

function readMetadata(stored) {
  if (!stored || typeof stored !== "object" || stored.__expires === undefined) {
    return { metadata: stored ?? null };
  }
  const { __expires: expiration, __metadata: own, ...rest } = stored;
  return { metadata: own ? rest : null, expiration };
}

// -- the budget of one invocation ----------------------------------------------------------

class Budget {
  constructor(limits) {
    this.limits = limits;
    this.kv = 0;
    this.d1 = 0;
  }

  spend(kind, count, where) {
    const name = kind === "kv" ? "kv_operations" : "d1_statements";
    if (this[kind] + count > this.limits[name]) {
      throw new OperationError(
        "limit",
        `${where}: ${count} more ${name.replace("_", " ")} would pass the ${this.limits[name]} one invocation may make`,
      );
    }
    this[kind] += count;
  }
}

function limitsFor(env) {
  const plan = env.NIMBUS_GATEWAY_PLAN || "paid";
  if (!PLANS[plan]) throw new GatewayError(500, "misconfigured", `NIMBUS_GATEWAY_PLAN must be free or paid, not ${plan}`);
  return {
    plan,
    max_body_bytes: Number(env.NIMBUS_GATEWAY_MAX_BODY_BYTES || DEFAULT_MAX_BODY),
    max_operations: MAX_OPERATIONS,
    max_bulk_get: BULK_GET,
    ...PLANS[plan],
  };
}

// -- operations ----------------------------------------------------------------------------

function namespaces(env) {
  return (env.NIMBUS_KV_NAMESPACES || "").split(",").map((n) => n.trim()).filter(Boolean);
}

function binding(env, ns, where) {
  if (typeof ns !== "string" || !namespaces(env).includes(ns) || !env[ns]) {
    throw new OperationError("invalid", `${where}: no KV namespace ${JSON.stringify(ns)} is bound (bound: ${namespaces(env).join(", ")})`);
  }
  return env[ns];
}

function fill(template, record) {
  let missing = false;
  const key = template.replace(/\{([A-Za-z0-9_.]+)\}/g, (_, name) => {
    let value = record;
    for (const part of name.split(".")) value = value == null ? undefined : value[part];
    if (value === undefined || value === null || typeof value === "object") missing = true;
    return String(value);
  });
  return missing ? null : key;
}

function referencedKeys(ref, results, index, where) {
  if (!ref || !Number.isInteger(ref.op) || ref.op < 0 || ref.op >= index || typeof ref.template !== "string") {
    throw new OperationError("invalid", `${where}: keys_from needs an earlier "op" index and a "template"`);
  }
  const source = results[ref.op];
  if (!source.ok) throw new OperationError("skipped", `${where}: operation ${ref.op} failed`);
  let records;
  if (source.value.results) {
    const statement = source.value.results[ref.statement ?? 0];
    if (!statement) throw new OperationError("invalid", `${where}: operation ${ref.op} has no statement ${ref.statement ?? 0}`);
    records = statement.rows;
  } else if (source.value.entries) {
    records = Object.values(source.value.entries).map((entry) => {
      try {
        return JSON.parse(entry.value.text ?? "null");
      } catch {
        return null;
      }
    });
  } else {
    throw new OperationError("invalid", `${where}: operation ${ref.op} returned neither rows nor entries`);
  }
  const keys = [];
  for (const record of records) {
    const key = record && typeof record === "object" ? fill(ref.template, record) : null;
    if (key !== null) keys.push(key);
  }
  return [...new Set(keys)];
}

function checkKeys(keys, where) {
  if (!Array.isArray(keys) || keys.some((k) => typeof k !== "string" || !k)) {
    throw new OperationError("invalid", `${where}: keys must be a list of non-empty strings`);
  }
}

async function readSingle(kv, key, budget, where) {
  budget.spend("kv", 1, where);
  const { value, metadata } = await kv.getWithMetadata(key, { type: "arrayBuffer" });
  return value === null ? null : { value: toWire(value), ...readMetadata(metadata) };
}

async function kvGet(env, op, keys, budget, where) {
  const kv = binding(env, op.ns, where);
  const entries = {};
  for (let start = 0; start < keys.length; start += BULK_GET) {
    const chunk = keys.slice(start, start + BULK_GET);
    let found;
    if (chunk.length === 1) {
      const entry = await readSingle(kv, chunk[0], budget, where);
      found = new Map(entry ? [[chunk[0], entry]] : []);
    } else {
      budget.spend("kv", 1, where);
      let bulk;
      try {
        bulk = await kv.getWithMetadata(chunk, { type: "text" });
      } catch (error) {
        bulk = null; // over the bulk read's size cap: read them one by one
      }
      found = new Map();
      for (const key of chunk) {
        const item = bulk ? bulk.get(key) : undefined;
        if (bulk && (!item || item.value === null)) continue;
        if (bulk && !item.value.includes("\uFFFD")) {
          found.set(key, { value: { text: item.value }, ...readMetadata(item.metadata) });
        } else {
          // not valid UTF-8 as text (or no bulk answer): the exact bytes, read singly
          const entry = await readSingle(kv, key, budget, where);
          if (entry) found.set(key, entry);
        }
      }
    }
    for (const [key, entry] of found) entries[key] = entry;
  }
  return { entries };
}

async function kvPut(env, op, budget, where, now) {
  const kv = binding(env, op.ns, where);
  if (!Array.isArray(op.items)) throw new OperationError("invalid", `${where}: items must be a list`);
  const writes = op.items.map((item, i) => {
    const at = `${where}, item ${i}`;
    checkKeys([item && item.key], at);
    let ttl = null;
    if (item.ttl !== undefined && item.ttl !== null) {
      if (!Number.isInteger(item.ttl) || item.ttl < 60) throw new OperationError("invalid", `${at}: ttl must be whole seconds, at least 60`);
      ttl = item.ttl;
    }
    return [item.key, fromWire(item.value, at), writeOptions(item.metadata ?? null, ttl, now)];
  });
  budget.spend("kv", writes.length, where);
  for (let start = 0; start < writes.length; start += 50) {
    await Promise.all(writes.slice(start, start + 50).map(([key, value, options]) => kv.put(key, value, options)));
  }
  return { count: writes.length };
}

async function kvDelete(env, op, budget, where) {
  const kv = binding(env, op.ns, where);
  checkKeys(op.keys, where);
  const keys = [...new Set(op.keys)];
  const existed = [];
  for (let start = 0; start < keys.length; start += BULK_GET) {
    const chunk = keys.slice(start, start + BULK_GET);
    budget.spend("kv", chunk.length, where);
    // Which keys exist, without reading values: a list of each key's own prefix finds it.
    const pages = await Promise.all(
      chunk.map((key) => kv.list({ prefix: key, limit: 10 }).then((page) => page.keys.some((item) => item.name === key))),
    );
    chunk.forEach((key, i) => pages[i] && existed.push(key));
  }
  budget.spend("kv", keys.length, where);
  for (let start = 0; start < keys.length; start += 50) {
    await Promise.all(keys.slice(start, start + 50).map((key) => kv.delete(key)));
  }
  if (keys.length && env.DB) {
    budget.spend("d1", 1, where);
    await withSchema(env.DB, () =>
      env.DB
        .prepare("DELETE FROM _nimbus_counters WHERE namespace = ? AND key IN (SELECT value FROM json_each(?))")
        .bind(op.ns, JSON.stringify(keys))
        .run(),
    );
  }
  return { existed };
}

async function kvList(env, op, budget, where) {
  const kv = binding(env, op.ns, where);
  const limit = op.limit ?? 1000;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new OperationError("invalid", `${where}: limit must be 1 to 1000`);
  budget.spend("kv", 1, where);
  const page = await kv.list({ prefix: op.prefix || undefined, cursor: op.cursor || undefined, limit });
  return { keys: page.keys.map((item) => item.name), cursor: page.list_complete ? null : page.cursor };
}

async function kvIncr(env, op, budget, where, now) {
  const kv = binding(env, op.ns, where);
  checkKeys([op.key], where);
  const amount = op.amount ?? 1;
  if (!Number.isSafeInteger(amount)) throw new OperationError("invalid", `${where}: amount must be an integer`);
  const ttl = op.ttl ?? null;
  if (ttl !== null && (!Number.isInteger(ttl) || ttl < 60)) throw new OperationError("invalid", `${where}: ttl must be whole seconds, at least 60`);
  const db = env.DB;
  budget.spend("d1", 1, where);
  const bump = () =>
    db
      .prepare("UPDATE _nimbus_counters SET value = value + ? WHERE namespace = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?) RETURNING value, expires_at")
      .bind(amount, op.ns, op.key, now)
      .first();
  let row = await withSchema(db, bump);
  if (!row) {
    // A new window starts from 0; a first use from what KV holds (a value put there), and
    // both count atomically from there. The KV copy of an ended window may outlive it (KV
    // keeps a key at least 60 s), so only a counter D1 has never held is seeded from KV.
    budget.spend("d1", 1, where);
    const ended = await db
      .prepare("SELECT 1 AS found FROM _nimbus_counters WHERE namespace = ? AND key = ?")
      .bind(op.ns, op.key)
      .first();
    let stored = null;
    if (!ended) {
      budget.spend("kv", 1, where);
      stored = await kv.get(op.key, { type: "text" });
    }
    let seed = 0;
    if (stored !== null) {
      if (!/^\s*-?\d+\s*$/.test(stored)) throw new OperationError("invalid", `${JSON.stringify(op.key)} does not hold an integer`);
      seed = Number(stored);
    }
    budget.spend("d1", 1, where);
    row = await db
      .prepare(
        "INSERT INTO _nimbus_counters (namespace, key, value, expires_at) VALUES (?1, ?2, ?3, ?4) " +
          "ON CONFLICT (namespace, key) DO UPDATE SET " +
          "value = CASE WHEN expires_at IS NOT NULL AND expires_at <= ?5 THEN excluded.value ELSE value + ?6 END, " +
          "expires_at = CASE WHEN expires_at IS NOT NULL AND expires_at <= ?5 THEN excluded.expires_at ELSE expires_at END " +
          "RETURNING value, expires_at",
      )
      .bind(op.ns, op.key, seed + amount, ttl === null ? null : now + ttl, now, amount)
      .first();
  }
  const left = row.expires_at === null ? null : Math.max(60, Math.ceil(row.expires_at - now));
  budget.spend("kv", 1, where);
  try {
    await kv.put(op.key, String(row.value), writeOptions(null, left, now));
  } catch {
    // KV takes one write per second per key: the count in D1 stays the truth
  }
  return { value: row.value, expiration: row.expires_at };
}

async function kvListEdit(env, op, budget, where) {
  // The spec's list layout: a JSON array of strings, its owners in the metadata's _auth. A list
  // with items belongs to its owners; an empty one to whoever adds first. A read then a write
  // in one invocation (KV has no compare-and-set: the last writer wins, as over REST).
  const kv = binding(env, op.ns, where);
  checkKeys([op.key], where);
  if (!["add", "remove", "clear"].includes(op.change)) throw new OperationError("invalid", `${where}: change is add, remove or clear`);
  if (op.change !== "clear" && typeof op.item !== "string") throw new OperationError("invalid", `${where}: item must be a string`);
  const owner = op.owner ?? null;
  budget.spend("kv", 1, where);
  const { value, metadata } = await kv.getWithMetadata(op.key, { type: "text" });
  let before = [];
  if (value !== null) {
    let parsed;
    try {
      parsed = JSON.parse(value);
    } catch {
      parsed = null;
    }
    if (!Array.isArray(parsed)) throw new OperationError("invalid", `${JSON.stringify(op.key)} does not hold a list`);
    before = parsed.map(String);
  }
  const owners = before.length && metadata && Array.isArray(metadata._auth) ? metadata._auth : [];
  if (before.length && owner !== null && !owners.includes(owner)) return { changed: null };
  if (op.change === "clear") {
    if (value === null) return { changed: false };
    budget.spend("kv", 1, where);
    await kv.delete(op.key);
    return { changed: true };
  }
  let items;
  if (op.change === "add") {
    if (before.includes(op.item)) return { changed: false };
    items = [...before, op.item];
  } else {
    if (!before.includes(op.item)) return { changed: false };
    items = before.filter((existing) => existing !== op.item);
  }
  const auth = before.length ? owners : owner !== null ? [owner] : [];
  budget.spend("kv", 1, where);
  await kv.put(op.key, JSON.stringify(items), { metadata: { _auth: auth } });
  return { changed: true };
}

async function d1Batch(env, op, budget, where) {
  if (!Array.isArray(op.statements) || !op.statements.length) {
    throw new OperationError("invalid", `${where}: statements must be a non-empty list`);
  }
  budget.spend("d1", op.statements.length, where);
  const db = env.DB;
  const prepared = op.statements.map((statement, i) => {
    const at = `${where}, statement ${i}`;
    if (!statement || typeof statement.sql !== "string" || !statement.sql.trim()) {
      throw new OperationError("invalid", `${at}: sql must be a non-empty string`);
    }
    const params = statement.params ?? [];
    if (!Array.isArray(params)) throw new OperationError("invalid", `${at}: params must be a list`);
    return db.prepare(statement.sql).bind(...params.map((value) => param(value, at)));
  });
  let results;
  try {
    results = await db.batch(prepared); // one transaction: every statement or none
  } catch (error) {
    const message = String(error && error.message ? error.message : error);
    throw new OperationError(/constraint failed/i.test(message) ? "integrity" : "query", message);
  }
  return {
    results: results.map((result) => ({
      rows: (result.results ?? []).map((row) => {
        const out = {};
        for (const [name, value] of Object.entries(row)) out[name] = column(value);
        return out;
      }),
      changes: result.meta?.changes ?? 0,
      last_row_id: result.meta?.last_row_id ?? null,
    })),
  };
}

async function runOperation(env, op, results, index, budget, now) {
  const where = `operation ${index} (${op.op})`;
  switch (op.op) {
    case "kv.get": {
      const keys = op.keys_from ? referencedKeys(op.keys_from, results, index, where) : op.keys;
      checkKeys(keys, where);
      return kvGet(env, op, keys, budget, where);
    }
    case "kv.put":
      return kvPut(env, op, budget, where, now);
    case "kv.delete":
      return kvDelete(env, op, budget, where);
    case "kv.list":
      return kvList(env, op, budget, where);
    case "kv.incr":
      return kvIncr(env, op, budget, where, now);
    case "kv.list_edit":
      return kvListEdit(env, op, budget, where);
    case "d1.batch":
      return d1Batch(env, op, budget, where);
  }
  throw new OperationError("invalid", `${where}: unknown operation`);
}

// -- requests ------------------------------------------------------------------------------

function checkOperations(body, limits) {
  const operations = body && body.operations;
  if (!Array.isArray(operations) || !operations.length) {
    throw new GatewayError(400, "invalid", 'the body must be {"operations": [...]} with at least one operation');
  }
  if (operations.length > limits.max_operations) {
    throw new GatewayError(400, "too_many_operations", `${operations.length} operations; at most ${limits.max_operations} per request`);
  }
  let kv = 0;
  let d1 = 0;
  operations.forEach((op, i) => {
    if (!op || typeof op !== "object" || !OPERATIONS.has(op.op)) {
      throw new GatewayError(400, "unknown_operation", `operation ${i}: unknown operation ${JSON.stringify(op && op.op)}`);
    }
    if (op.requires !== undefined && (!Array.isArray(op.requires) || op.requires.some((r) => !Number.isInteger(r) || r < 0 || r >= i))) {
      throw new GatewayError(400, "invalid", `operation ${i}: requires lists indices of earlier operations`);
    }
    if (op.op === "d1.batch") d1 += Array.isArray(op.statements) ? op.statements.length : 0;
    if (op.op === "kv.put") kv += Array.isArray(op.items) ? op.items.length : 0;
    if (op.op === "kv.delete") kv += Array.isArray(op.keys) ? 2 * op.keys.length : 0; // a list and a delete each
    if (op.op === "kv.get" && Array.isArray(op.keys)) kv += Math.ceil(op.keys.length / BULK_GET);
  });
  if (kv > limits.kv_operations || d1 + 1 > limits.d1_statements) {
    throw new GatewayError(
      413,
      "over_limit",
      `the request needs ${kv} KV operations and ${d1 + 1} D1 statements; one invocation may make ${limits.kv_operations} and ${limits.d1_statements} (plan ${limits.plan})`,
    );
  }
  return { operations, spare: limits.d1_statements - d1 - 1 };
}

async function run(request, env) {
  const limits = limitsFor(env);
  const url = new URL(request.url);
  const now = Date.now() / 1000;
  const declared = Number(request.headers.get("content-length") || 0);
  if (declared > limits.max_body_bytes) {
    throw new GatewayError(413, "too_large", `the body is ${declared} bytes; at most ${limits.max_body_bytes}`);
  }
  const body = new Uint8Array(await request.arrayBuffer());
  if (body.length > limits.max_body_bytes) {
    throw new GatewayError(413, "too_large", `the body is ${body.length} bytes; at most ${limits.max_body_bytes}`);
  }
  const signature = await authenticate(request, env, body, now);
  if (url.pathname === "/v1/status" && request.method === "GET") {
    const bound = namespaces(env).filter((name) => env[name] && typeof env[name].getWithMetadata === "function");
    return Response.json({
      version: VERSION,
      plan: limits.plan,
      limits,
      namespaces: bound,
      unbound: namespaces(env).filter((name) => !bound.includes(name)),
      d1: Boolean(env.DB),
    });
  }
  if (url.pathname !== "/v1/run" || request.method !== "POST") {
    throw new GatewayError(404, "not_found", `no route ${request.method} ${url.pathname} (protocol v${VERSION}: POST /v1/run)`);
  }
  let parsed;
  try {
    parsed = JSON.parse(new TextDecoder().decode(body));
  } catch {
    throw new GatewayError(400, "invalid", "the body is not JSON");
  }
  const { operations, spare } = checkOperations(parsed, limits);
  const used = await refuseReplay(env, signature, now, spare);
  const budget = new Budget(limits);
  budget.spend("d1", used, "the replay check");
  const results = [];
  for (const [index, op] of operations.entries()) {
    const required = op.requires ?? [...Array(index).keys()];
    const failed = required.find((i) => !results[i].ok);
    if (failed !== undefined) {
      results.push({ ok: false, error: { type: "skipped", message: `operation ${index} not run: operation ${failed} failed` } });
      continue;
    }
    try {
      results.push({ ok: true, value: await runOperation(env, op, results, index, budget, now) });
    } catch (error) {
      const type = error instanceof OperationError ? error.type : "unavailable";
      results.push({ ok: false, error: { type, message: String(error && error.message ? error.message : error) } });
    }
  }
  return Response.json({ results });
}

export default {
  async fetch(request, env) {
    try {
      return await run(request, env);
    } catch (error) {
      if (error instanceof GatewayError) return refuse(error.status, error.type, error.message);
      return refuse(500, "unavailable", String(error && error.message ? error.message : error));
    }
  },
};
