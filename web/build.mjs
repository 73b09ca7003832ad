// Builds the page's script into web/public (what server.web_root serves,
// beside the committed index.html and app.css): app.js bundled by esbuild
// from src/app.ts and the SDK's TypeScript sources, with the protobuf code
// generated from proto/im.proto. Needs `npm ci` in clients/js and here. No
// CDN: everything the page loads is in that folder. IM_WEB_OUT builds it
// into another folder (index.html and app.css copied there).
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const sdk = join(here, "..", "clients", "js");
const pub = join(here, "public");
const out = process.env.IM_WEB_OUT ?? pub;
execFileSync(process.execPath, [join(sdk, "scripts", "gen-proto.mjs")], { stdio: "inherit" });
// esbuild strips types without checking them: the SDK's TypeScript does.
execFileSync(process.execPath, [join(sdk, "node_modules", "typescript", "bin", "tsc"), "-p", join(here, "tsconfig.json")], {
  stdio: "inherit",
});
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, "src", "app.ts")],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2021"],
  minify: true,
  sourcemap: true,
  // Node's WebSocket package: never loaded in a browser (it has its own).
  external: ["ws"],
  outfile: join(out, "app.js"),
  logLevel: "warning",
});
if (out !== pub) for (const f of ["index.html", "app.css"]) copyFileSync(join(pub, f), join(out, f));
console.log(`web: built into ${out}`);
