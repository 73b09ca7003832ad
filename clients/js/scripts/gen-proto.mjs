// Generates the protobuf code from the server's proto/im.proto (build time;
// no hand-written encoder): src/gen/im.js (ES module) and its types.
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// IM_PROTO names it when the package is built outside the repository (CTest).
const proto = process.env.IM_PROTO ?? join(root, "..", "..", "proto", "im.proto");
const out = join(root, "src", "gen");
const bin = (name) => join(root, "node_modules", ".bin", name);
mkdirSync(out, { recursive: true });
execFileSync(bin("pbjs"), ["-t", "static-module", "-w", "es6", "--no-verify", "--no-delimited", "--no-convert",
  "--no-typeurl", "-o", join(out, "im.js"), proto], { stdio: "inherit" });
execFileSync(bin("pbts"), ["-o", join(out, "im.d.ts"), join(out, "im.js")], { stdio: "inherit" });
