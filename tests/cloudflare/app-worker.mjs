// An application Worker written the way the datastore spec's JS Datastore/KVAdapter is: it
// reads and writes `{class}:{id}` keys in the NIMBUS_* namespaces through its own bindings and
// checks the `_auth` array. The interop tests use it to prove that Python and Workers share data.
//
//   GET /app/{userId}/{CLASS}/{id}   -> {"data": <object or null>}
//   PUT /app/{userId}/{CLASS}/{id}   body: JSON object -> stored with _auth: [userId]
//
// It also reads and writes what the KV clients do, the way the kv-clients spec's clients and
// the data-structures spec's CacheData ({data, created, expires, type}, ISO 8601 timestamps)
// say, in NIMBUS_CACHE: a rate limiter's count under `${keyPrefix}${identifier}`
// (`rl:login:192.168.1.1`) and cache entries under `cache:{feature}:{key}`.
//
//   GET /kv-clients/ratelimit/{keyPrefix}/{identifier} -> {"key": ..., "count": <number>}
//   GET /kv-clients/cache/{key}  -> {"data": <value, or null if missing or expired>,
//                                    "entry": <the stored CacheData>}
//   PUT /kv-clients/cache/{key}?ttl=300&type=page_data   body: JSON value -> stored as CacheData

class KVAdapter {
  constructor(env) {
    this.env = env;
    this.authContext = null;
  }

  auth(userId) {
    const scoped = new KVAdapter(this.env);
    scoped.authContext = userId;
    return scoped;
  }

  async get(cls, id) {
    const kv = this.getNamespace(cls);
    const key = this.makeKey(cls, id);
    const data = await kv.get(key, "json");
    if (data && data._auth && !data._auth.includes(this.authContext)) {
      return null; // No access
    }
    return data;
  }

  async put(cls, id, data) {
    const kv = this.getNamespace(cls);
    const key = this.makeKey(cls, id);
    const dataWithAuth = { ...data, _auth: [this.authContext] };
    await kv.put(key, JSON.stringify(dataWithAuth));
  }

  getNamespace(cls) {
    const mapping = {
      USER: this.env.NIMBUS_USERS,
      PROJECT: this.env.NIMBUS_PROJECTS,
      PAGE: this.env.NIMBUS_PAGES,
      APIKEY: this.env.NIMBUS_KEYS,
      SESSION: this.env.NIMBUS_SESSIONS,
      CACHE: this.env.NIMBUS_CACHE,
      EMAIL: this.env.NIMBUS_EMAILS,
      LIST: this.env.NIMBUS_LISTS,
      BATCH: this.env.NIMBUS_BATCHES,
    };
    if (!mapping[cls]) {
      throw new Error(`Unknown class: ${cls}`);
    }
    return mapping[cls];
  }

  makeKey(cls, id) {
    return `${cls.toLowerCase()}:${id}`;
  }
}

class Datastore {
  constructor(env) {
    this.KV = new KVAdapter(env);
  }
}

class RateLimiterClient {
  constructor(kv) {
    this.kv = kv;
  }

  async count(identifier, keyPrefix) {
    const key = `${keyPrefix}${identifier}`;
    const raw = await this.kv.get(key);
    return { key, count: raw === null ? 0 : Number(raw) };
  }
}

class CacheClient {
  constructor(kv) {
    this.kv = kv;
  }

  async get(key) {
    const entry = await this.kv.get(key, "json");
    if (!entry || (entry.expires !== null && Date.parse(entry.expires) <= Date.now())) {
      return { data: null, entry };
    }
    return { data: entry.data, entry };
  }

  async set(key, value, ttl, type) {
    const now = Date.now();
    const entry = {
      data: value,
      created: new Date(now).toISOString(),
      expires: new Date(now + ttl * 1000).toISOString(),
      type,
    };
    await this.kv.put(key, JSON.stringify(entry), { expirationTtl: Math.max(ttl, 60) });
  }
}

async function kvClients(request, env, parts) {
  const [, client, ...rest] = parts;
  if (client === "cache" && rest.length === 1) {
    const cache = new CacheClient(env.NIMBUS_CACHE);
    if (request.method === "GET") return Response.json(await cache.get(rest[0]));
    if (request.method === "PUT") {
      const params = new URL(request.url).searchParams;
      const ttl = Number(params.get("ttl") ?? "300");
      await cache.set(rest[0], await request.json(), ttl, params.get("type") ?? "page_data");
      return Response.json({ ok: true });
    }
  }
  if (client === "ratelimit" && rest.length === 2 && request.method === "GET") {
    return Response.json(await new RateLimiterClient(env.NIMBUS_CACHE).count(rest[1], rest[0]));
  }
  return new Response("not found", { status: 404 });
}

export default {
  async fetch(request, env) {
    const DATASTORE = new Datastore(env);
    const parts = new URL(request.url).pathname.split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[0] === "kv-clients") return kvClients(request, env, parts);
    if (parts[0] !== "app" || parts.length !== 4) return new Response("not found", { status: 404 });
    const [, userId, cls, id] = parts;
    const db = DATASTORE.KV.auth(userId);
    try {
      if (request.method === "GET") return Response.json({ data: await db.get(cls, id) });
      if (request.method === "PUT") {
        await db.put(cls, id, await request.json());
        return Response.json({ ok: true });
      }
    } catch (error) {
      return Response.json({ error: String(error.message || error) }, { status: 400 });
    }
    return new Response("method not allowed", { status: 405 });
  },
};
