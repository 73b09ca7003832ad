// tsc does not copy the generated JavaScript: dist/gen gets it here.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
mkdirSync(join(root, "dist", "gen"), { recursive: true });
for (const f of ["im.js", "im.d.ts"]) copyFileSync(join(root, "src", "gen", f), join(root, "dist", "gen", f));
