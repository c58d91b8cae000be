// Bundles the dashboard (src/) into the api service's static files with esbuild.
// Usage: node build.mjs <outdir>; scripts/build_web.py runs it (make web, run, demo, Docker).
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";

const out = process.argv[2];
if (!out) {
  console.error("usage: node build.mjs <outdir>");
  process.exit(2);
}
await mkdir(out, { recursive: true });
await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  minify: true,
  sourcemap: true,
  format: "esm",
  target: ["es2022"],
  outfile: join(out, "app.js"),
  logLevel: "warning",
  legalComments: "linked",
});
await copyFile("src/index.html", join(out, "index.html"));
console.log(`dashboard built into ${out}`);
