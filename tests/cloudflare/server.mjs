// Starts the local Cloudflare REST API (api-worker.mjs), the interop Worker (app-worker.mjs),
// the Worker that reads the data-structures spec's layout (spec-reader.mjs) and the Nimbus
// gateway Worker users deploy (../../worker/gateway.js, on the same KV namespaces and D1
// database, under /v1/) in one Miniflare instance on a free loopback port, prints "READY <url>", and runs until its standard input
// closes or it receives SIGTERM/SIGINT. The two Workers bind the NIMBUS_* namespaces.
//
// Usage: node server.mjs '<json config>'
//   {"account": "...", "token": "...",
//    "kv": {"<namespace id>": "<NIMBUS_* binding name for the Workers, or null>"},
//    "d1": ["<database id>", ...], "persist": "<directory>" | null,
//    "gateway": {"namespaces": {"<binding name>": "<namespace id>"}, "vars": {...}}}

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";

const here = dirname(fileURLToPath(import.meta.url));
const config = JSON.parse(process.argv[2] ?? "{}");
const kvIds = Object.keys(config.kv ?? {});
const d1Ids = config.d1 ?? [];

const kvNamespaces = Object.fromEntries(kvIds.map((id, i) => [`KV_${i}`, id]));
const d1Databases = Object.fromEntries(d1Ids.map((id, i) => [`D1_${i}`, id]));
const appNamespaces = Object.fromEntries(
  Object.entries(config.kv ?? {})
    .filter(([, binding]) => binding)
    .map(([id, binding]) => [binding, id]),
);
const persist = config.persist
  ? { kvPersist: join(config.persist, "kv"), d1Persist: join(config.persist, "d1") }
  : { kvPersist: false, d1Persist: false };

const gateway = config.gateway ?? { namespaces: {}, vars: {} };

const mf = new Miniflare({
  host: "127.0.0.1",
  port: 0,
  ...persist,
  workers: [
    {
      name: "cloudflare-api",
      modules: true,
      scriptPath: join(here, "api-worker.mjs"),
      compatibilityDate: "2026-04-01",
      kvNamespaces,
      d1Databases,
      bindings: {
        ACCOUNT: config.account,
        TOKEN: config.token,
        KV_IDS: JSON.stringify(Object.fromEntries(kvIds.map((id, i) => [id, `KV_${i}`]))),
        D1_IDS: JSON.stringify(Object.fromEntries(d1Ids.map((id, i) => [id, `D1_${i}`]))),
      },
      routes: ["*/client/v4/*", "*/__test/*"],
    },
    {
      name: "app",
      modules: true,
      scriptPath: join(here, "app-worker.mjs"),
      compatibilityDate: "2026-04-01",
      kvNamespaces: appNamespaces,
      routes: ["*/app/*", "*/kv-clients/*"],
    },
    {
      name: "spec-reader",
      modules: true,
      scriptPath: join(here, "spec-reader.mjs"),
      compatibilityDate: "2026-04-01",
      kvNamespaces: appNamespaces,
      routes: ["*/spec/*"],
    },
    {
      name: "gateway",
      modules: true,
      modulesRoot: join(here, "..", "..", "worker"),
      scriptPath: join(here, "..", "..", "worker", "gateway.js"),
      compatibilityDate: "2026-04-01",
      kvNamespaces: gateway.namespaces,
      d1Databases: d1Ids.length ? { DB: d1Ids[0] } : {},
      bindings: {
        NIMBUS_KV_NAMESPACES: Object.keys(gateway.namespaces).join(","),
        ...gateway.vars,
      },
      routes: ["*/v1/*"],
    },
  ],
});

const url = await mf.ready;
process.stdout.write(`READY ${url}\n`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await mf.dispose();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
