// One bundle for the extension (vscode-languageclient inlined); `vscode` is provided by the host.
// The tests are built apart, file by file, into out/test (they run inside the extension host).
import * as esbuild from "esbuild";
import * as fs from "node:fs";

await esbuild.build({
    entryPoints: ["src/main.ts"],
    bundle: true,
    outfile: "dist/extension.js",
    external: ["vscode"],
    format: "cjs",
    platform: "node",
    target: "node20",
    sourcemap: true,
    logLevel: "warning",
});

const tests = fs.readdirSync("test").filter((f) => f.endsWith(".ts")).map((f) => `test/${f}`);
await esbuild.build({
    entryPoints: tests,
    bundle: false,
    outdir: "out/test",
    format: "cjs",
    platform: "node",
    target: "node20",
    sourcemap: true,
    logLevel: "warning",
});
