// A local Cloudflare REST API for the test suite: the KV and D1 routes the Python backend uses,
// served by a Worker on Miniflare's workerd with real KV and D1 bindings, with Cloudflare's
// envelope ({success, errors, messages, result}) and status codes.
//
// Bindings (set by server.mjs): KV_IDS / D1_IDS map namespace and database ids to binding names,
// TOKEN and ACCOUNT are the only credentials accepted.
//
// Test controls (not part of Cloudflare's API), under /__test/:
//   POST /__test/faults   queue failures: [{status?, code?, message?, retry_after?, after?,
//                         delay_ms?}]; each later API request takes one; `after: true` fails
//                         *after* applying; `delay_ms` answers late (a client timeout)
//   POST /__test/reset    empty every KV namespace and drop every D1 table
//   GET  /__test/requests how many API requests arrived (and reset the count)

const PREFIX = "/client/v4/accounts/";
const faults = [];
let requestCount = 0;

function envelope(result, extra = {}) {
  return { success: true, errors: [], messages: [], result, ...extra };
}

function failure(status, code, message, headers = {}) {
  return new Response(
    JSON.stringify({ success: false, errors: [{ code, message }], messages: [], result: null }),
    { status, headers: { "content-type": "application/json", ...headers } },
  );
}

function json(result, extra = {}) {
  return Response.json(envelope(result, extra));
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function kvBinding(env, namespaceId) {
  const binding = JSON.parse(env.KV_IDS)[namespaceId];
  if (!binding) throw new ApiError(404, 10013, `namespace not found: ${namespaceId}`);
  return env[binding];
}

function d1Binding(env, databaseId) {
  const binding = JSON.parse(env.D1_IDS)[databaseId];
  if (!binding) throw new ApiError(404, 7404, `database not found: ${databaseId}`);
  return env[binding];
}

function expirationOptions(params) {
  const options = {};
  const ttl = params.get("expiration_ttl");
  const at = params.get("expiration");
  if (ttl !== null) {
    const seconds = Number(ttl);
    if (!Number.isInteger(seconds) || seconds < 60) {
      throw new ApiError(400, 10037, `Invalid expiration_ttl of ${ttl}. Expiration TTL must be at least 60.`);
    }
    options.expirationTtl = seconds;
  } else if (at !== null) {
    options.expiration = Number(at);
  }
  return options;
}

function checkKey(key) {
  if (!key || key === "." || key === "..") throw new ApiError(400, 10019, "Invalid key name");
  if (new TextEncoder().encode(key).length > 512) {
    throw new ApiError(414, 10033, "UTF-8 encoded length of key exceeds 512 bytes");
  }
}

function checkMetadata(metadata) {
  if (metadata !== undefined && JSON.stringify(metadata).length > 1024) {
    throw new ApiError(413, 10022, "Metadata length exceeds 1024 bytes");
  }
}

async function findExpiration(kv, key) {
  const page = await kv.list({ prefix: key, limit: 10 });
  const hit = page.keys.find((entry) => entry.name === key);
  return hit ? hit.expiration : undefined;
}

function base64ToBytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

async function handleKV(request, env, namespaceId, rest) {
  const kv = kvBinding(env, namespaceId);
  const url = new URL(request.url);
  const method = request.method;
  const [resource, ...keyParts] = rest;
  const key = keyParts.length ? decodeURIComponent(keyParts.join("/")) : undefined;

  if (resource === "values" && key !== undefined) {
    checkKey(key);
    if (method === "GET") {
      const value = await kv.get(key, { type: "arrayBuffer" });
      if (value === null) throw new ApiError(404, 10009, "get: 'key not found'");
      const headers = { "content-type": "application/octet-stream" };
      const expiration = await findExpiration(kv, key);
      if (expiration) headers.expiration = String(expiration);
      return new Response(value, { headers });
    }
    if (method === "PUT") {
      const options = expirationOptions(url.searchParams);
      const type = request.headers.get("content-type") || "";
      let value;
      if (type.startsWith("multipart/form-data")) {
        const form = await request.formData();
        const part = form.get("value");
        value = typeof part === "string" ? part : await part.arrayBuffer();
        const metadata = form.get("metadata");
        if (metadata !== null) {
          options.metadata = JSON.parse(typeof metadata === "string" ? metadata : await metadata.text());
          checkMetadata(options.metadata);
        }
      } else {
        value = await request.arrayBuffer();
      }
      if (value.byteLength > 25 * 1024 * 1024) throw new ApiError(413, 10011, "Value too large");
      await kv.put(key, value, options);
      return json({});
    }
    if (method === "DELETE") {
      await kv.delete(key);
      return json({});
    }
  }
  if (resource === "metadata" && key !== undefined && method === "GET") {
    checkKey(key);
    const { value, metadata } = await kv.getWithMetadata(key, { type: "stream" });
    if (value === null) throw new ApiError(404, 10009, "get: 'key not found'");
    await value.cancel();
    return json(metadata ?? null);
  }
  if (resource === "keys" && method === "GET") {
    const limit = Number(url.searchParams.get("limit") ?? 1000);
    if (!Number.isInteger(limit) || limit < 10 || limit > 1000) {
      throw new ApiError(400, 10026, "Invalid limit: must be between 10 and 1000");
    }
    const page = await kv.list({
      prefix: url.searchParams.get("prefix") ?? undefined,
      limit,
      cursor: url.searchParams.get("cursor") || undefined,
    });
    const cursor = page.list_complete ? "" : page.cursor;
    return json(page.keys, { result_info: { count: page.keys.length, cursor } });
  }
  if (resource === "bulk" && keyParts.length === 0 && method === "PUT") {
    const items = await request.json();
    if (!Array.isArray(items) || items.length > 10000) {
      throw new ApiError(400, 10002, "bulk write takes an array of at most 10000 items");
    }
    for (const item of items) {
      checkKey(item.key);
      checkMetadata(item.metadata);
      const params = new URLSearchParams();
      if (item.expiration_ttl !== undefined) params.set("expiration_ttl", String(item.expiration_ttl));
      if (item.expiration !== undefined) params.set("expiration", String(item.expiration));
      const options = expirationOptions(params);
      if (item.metadata !== undefined) options.metadata = item.metadata;
      const value = item.base64 ? base64ToBytes(item.value) : item.value;
      await kv.put(item.key, value, options);
    }
    return json({ successful_key_count: items.length, unsuccessful_keys: [] });
  }
  if (resource === "bulk" && keyParts[0] === "delete" && method === "POST") {
    const keys = await request.json();
    if (!Array.isArray(keys) || keys.length > 10000) {
      throw new ApiError(400, 10002, "bulk delete takes an array of at most 10000 keys");
    }
    for (const name of keys) await kv.delete(name);
    return json({ successful_key_count: keys.length, unsuccessful_keys: [] });
  }
  if (resource === "bulk" && keyParts[0] === "get" && method === "POST") {
    const body = await request.json();
    const keys = body.keys ?? [];
    if (!Array.isArray(keys) || keys.length > 100) {
      throw new ApiError(400, 10002, "bulk get takes at most 100 keys");
    }
    // The binding's bulk read, so workerd's cap applies: 25 MB of values in total per read.
    let found;
    try {
      found = body.withMetadata
        ? await kv.getWithMetadata(keys, { type: "text" })
        : await kv.get(keys, { type: "text" });
    } catch (error) {
      const message = String(error && error.message ? error.message : error);
      if (/exceeds the limit/.test(message)) {
        throw new ApiError(413, 10000, message.replace(/^.*?(Total size)/, "$1"));
      }
      throw error;
    }
    const values = {};
    for (const name of keys) {
      const item = found.get(name) ?? null;
      if (body.withMetadata && item !== null && item.value !== null) {
        const entry = { value: item.value, metadata: item.metadata ?? null };
        const expiration = await findExpiration(kv, name);
        if (expiration) entry.expiration = expiration;
        values[name] = entry;
      } else {
        values[name] = body.withMetadata ? null : item;
      }
    }
    return json({ values });
  }
  throw new ApiError(404, 10000, `no route for ${method} ${url.pathname}`);
}

function d1Error(error) {
  const message = String(error && error.message ? error.message : error);
  return new ApiError(400, 7500, message);
}

async function handleD1(request, env, databaseId, action) {
  const db = d1Binding(env, databaseId);
  if (request.method !== "POST" || (action !== "query" && action !== "raw")) {
    throw new ApiError(404, 7404, "no such D1 route");
  }
  const body = await request.json();
  const statements = body.batch ?? [{ sql: body.sql, params: body.params ?? [] }];
  for (const statement of statements) {
    if (typeof statement.sql !== "string") throw new ApiError(400, 7400, "sql must be a string");
    if (statement.params !== undefined && !Array.isArray(statement.params)) {
      throw new ApiError(400, 7400, "Expected array");
    }
    // Cloudflare's published schema: params is an array of strings; anything else is refused.
    const bad = (statement.params ?? []).findIndex((value) => typeof value !== "string");
    if (bad >= 0) {
      throw new ApiError(400, 7400, `Invalid input: params[${bad}] must be a string, got ${JSON.stringify(statement.params[bad])}`);
    }
    if (/^\s*(BEGIN|SAVEPOINT|COMMIT|ROLLBACK)\b/i.test(statement.sql)) {
      throw new ApiError(400, 7500, "To execute a transaction, please use the state.storage.transaction() API instead of the SQL BEGIN TRANSACTION or SAVEPOINT statements.");
    }
  }
  let results;
  try {
    const prepared = statements.map((s) => db.prepare(s.sql).bind(...(s.params ?? [])));
    results = await db.batch(prepared); // one transaction: all statements or none
  } catch (error) {
    throw d1Error(error);
  }
  return json(
    results.map((result) => {
      const rows = result.results ?? [];
      if (action === "raw") {
        const columns = rows.length ? Object.keys(rows[0]) : [];
        return {
          results: { columns, rows: rows.map((row) => columns.map((c) => row[c])) },
          success: true,
          meta: result.meta,
        };
      }
      return { results: rows, success: true, meta: result.meta };
    }),
  );
}

async function reset(env) {
  for (const binding of Object.values(JSON.parse(env.KV_IDS))) {
    const kv = env[binding];
    let cursor;
    do {
      const page = await kv.list({ cursor });
      for (const entry of page.keys) await kv.delete(entry.name);
      cursor = page.list_complete ? undefined : page.cursor;
    } while (cursor);
  }
  for (const binding of Object.values(JSON.parse(env.D1_IDS))) {
    const db = env[binding];
    const { results } = await db
      .prepare("SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'")
      .all();
    const drops = results.map((row) => db.prepare(`DROP ${row.type.toUpperCase()} IF EXISTS "${row.name}"`));
    if (drops.length) await db.batch(drops);
  }
}

async function handleTestControl(request, env, path) {
  if (path === "/__test/faults" && request.method === "POST") {
    faults.push(...(await request.json()));
    return Response.json({ queued: faults.length });
  }
  if (path === "/__test/faults" && request.method === "DELETE") {
    faults.length = 0;
    return Response.json({ queued: 0 });
  }
  if (path === "/__test/reset" && request.method === "POST") {
    faults.length = 0;
    await reset(env);
    return Response.json({ reset: true });
  }
  if (path === "/__test/requests") {
    const count = requestCount;
    requestCount = 0;
    return Response.json({ requests: count });
  }
  return new Response("not found", { status: 404 });
}

function faultResponse(fault) {
  const headers = {};
  if (fault.retry_after !== undefined) headers["retry-after"] = String(fault.retry_after);
  return failure(fault.status, fault.code ?? (fault.status === 429 ? 10429 : 10500), fault.message ?? "injected fault", headers);
}

async function route(request, env) {
  const url = new URL(request.url);
  if (!url.pathname.startsWith(PREFIX)) return null;
  const [account, ...parts] = url.pathname.slice(PREFIX.length).split("/");
  if (request.headers.get("authorization") !== `Bearer ${env.TOKEN}`) {
    throw new ApiError(401, 10000, "Authentication error");
  }
  if (account !== env.ACCOUNT) throw new ApiError(403, 10000, "Authentication error");
  if (parts[0] === "storage" && parts[1] === "kv" && parts[2] === "namespaces") {
    if (parts.length === 3 && request.method === "GET") {
      const ids = Object.keys(JSON.parse(env.KV_IDS));
      return json(ids.map((id) => ({ id, title: id })), {
        result_info: { page: 1, per_page: ids.length, count: ids.length, total_count: ids.length },
      });
    }
    return handleKV(request, env, parts[3], parts.slice(4));
  }
  if (parts[0] === "d1" && parts[1] === "database" && parts.length === 4) {
    return handleD1(request, env, parts[2], parts[3]);
  }
  throw new ApiError(404, 7003, `Could not route to ${url.pathname}`);
}

export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path.startsWith("/__test/")) return handleTestControl(request, env, path);
    requestCount += 1;
    const fault = faults.shift();
    if (fault && fault.delay_ms) await new Promise((resolve) => setTimeout(resolve, fault.delay_ms));
    if (fault && fault.status && !fault.after) return faultResponse(fault);
    try {
      const response = await route(request, env);
      if (response === null) return failure(404, 7003, `Could not route to ${path}`);
      return fault && fault.status ? faultResponse(fault) : response;
    } catch (error) {
      if (error instanceof ApiError) return failure(error.status, error.code, error.message);
      return failure(500, 10001, `internal error: ${error && error.stack ? error.stack : error}`);
    }
  },
};
