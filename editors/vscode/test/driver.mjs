// Runs the extension in a real VS Code: the VS Code server bundled by code-server
// (`out/server-main.js`), rendered by Chromium driven with playwright-core. Started by
// tests/e2e/vscode.rs, which prepares the workspace and the environment; it can be run by hand
// the same way (see editors/vscode/README.md, "Tests").
//
//   node test/driver.mjs integration   mocha tests inside the extension host (out/test/index.js);
//                                      the server runs with --enable-smoke-test-driver and the
//                                      exit code comes back through `codeAutomationExit`
//   node test/driver.mjs ui            a person's path through the browser: status bar item,
//                                      the palette's `Orch: Spawn Agent`, a decision's button,
//                                      an attached terminal's text, an agent in a git worktree
//                                      reviewed in the diff editor; takes the README screenshot
//
// Environment (all required unless said):
//   ORCH_VSCODE_SERVER    the VS Code server directory (.../code-server/lib/vscode)
//   ORCH_VSCODE_NODE      the node binary to run it with (node 24)
//   ORCH_CHROMIUM         the Chromium binary (/usr/lib/chromium/chromium)
//   ORCH_PLAYWRIGHT       a directory whose node_modules has playwright-core
//   ORCH_VSCODE_EXT       the extension directory (built: dist/, out/test/)
//   ORCH_VSCODE_VSIX      ui mode: the packaged extension to install (else the dev path is used)
//   ORCH_VSCODE_WS        the workspace folder to open
//   ORCH_VSCODE_DATA      a scratch directory for VS Code's user, server and extensions data
//   ORCH_VSCODE_RESULTS   integration mode: the transcript file the tests write
//   ORCH_VSCODE_SHOT      ui mode, optional: where to write the screenshot (PNG)
//   ORCH_VSCODE_TIMEOUT_S optional: the whole run's limit (default 300)
//   ORCH_BIN              optional: the orch binary, written to the user setting `orch.path` and
//                         used by the tests' CLI calls (else `orch` on PATH)

import * as cp from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as path from "node:path";
import { createRequire } from "node:module";

const mode = process.argv[2];
if (mode !== "integration" && mode !== "ui") {
    console.error("usage: node driver.mjs integration|ui");
    process.exit(2);
}
const env = (name, optional = false) => {
    const v = process.env[name];
    if (!v && !optional) {
        console.error(`driver: ${name} is not set`);
        process.exit(2);
    }
    return v;
};
const serverDir = env("ORCH_VSCODE_SERVER");
const node = env("ORCH_VSCODE_NODE");
const chromiumPath = env("ORCH_CHROMIUM");
const playwrightDir = env("ORCH_PLAYWRIGHT");
const ext = path.resolve(env("ORCH_VSCODE_EXT"));
const ws = path.resolve(env("ORCH_VSCODE_WS"));
const data = path.resolve(env("ORCH_VSCODE_DATA"));
const timeoutS = Number(process.env.ORCH_VSCODE_TIMEOUT_S ?? "300");
const started = Date.now();
const log = (msg) => console.log(`driver [${((Date.now() - started) / 1000).toFixed(1)} s] ${msg}`);

const { chromium } = createRequire(path.join(playwrightDir, "driver.cjs"))("playwright-core");

function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.once("error", reject);
        s.listen(0, "127.0.0.1", () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

function httpOk(url) {
    return new Promise((resolve) => {
        const req = http.get(url, (res) => {
            res.resume();
            resolve(res.statusCode !== undefined && res.statusCode < 500);
        });
        req.on("error", () => resolve(false));
        req.setTimeout(2000, () => {
            req.destroy();
            resolve(false);
        });
    });
}

async function waitUntil(what, f, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        if (await f()) {
            return;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        }
        await new Promise((r) => setTimeout(r, 200));
    }
}

const dirs = {
    user: path.join(data, "user"),
    server: path.join(data, "server"),
    extensions: path.join(data, "extensions"),
    browser: path.join(data, "chromium"),
};
for (const d of Object.values(dirs)) {
    fs.mkdirSync(d, { recursive: true });
}
// User settings: the terminal's text in the DOM, no start page, nothing phoned home.
const settings = {
    "terminal.integrated.gpuAcceleration": "off",
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": false,
    "telemetry.telemetryLevel": "off",
    "extensions.autoUpdate": "off",
    "extensions.autoCheckUpdates": false,
    "update.mode": "none",
    "security.workspace.trust.enabled": false,
    "chat.disableAIFeatures": true,
    "workbench.colorTheme": "Dark Modern",
    "workbench.secondarySideBar.defaultVisibility": "hidden",
};
fs.mkdirSync(path.join(dirs.user, "User"), { recursive: true });
fs.writeFileSync(path.join(dirs.user, "User", "settings.json"), JSON.stringify(settings, null, 2));
// VS Code gives the extension host the PATH of a login shell, not ours: name the binary. It is a
// machine setting (the server's machine), so it goes to the remote machine's settings.
if (process.env.ORCH_BIN) {
    fs.mkdirSync(path.join(dirs.user, "Machine"), { recursive: true });
    fs.writeFileSync(path.join(dirs.user, "Machine", "settings.json"), JSON.stringify({ "orch.path": process.env.ORCH_BIN }, null, 2));
}

const serverMain = path.join(serverDir, "out", "server-main.js");
const common = [
    "--accept-server-license-terms",
    "--disable-telemetry",
    "--disable-workspace-trust",
    "--user-data-dir",
    dirs.user,
    "--server-data-dir",
    dirs.server,
    "--extensions-dir",
    dirs.extensions,
];

let server;
let browser;

/** Stop the server's whole process group (its file watchers and extension host included). */
function stopServer() {
    if (server && server.exitCode === null) {
        try {
            process.kill(-server.pid, "SIGKILL");
        } catch {
            // Already gone.
        }
    }
}

async function main() {
    const vsix = process.env.ORCH_VSCODE_VSIX;
    if (mode === "ui" && vsix) {
        log(`installing ${vsix}`);
        const r = cp.spawnSync(node, [serverMain, "--install-extension", vsix, "--force", ...common], { encoding: "utf8" });
        if (r.status !== 0) {
            throw new Error(`--install-extension failed (${r.status}): ${r.stdout}\n${r.stderr}`);
        }
    }
    const port = await freePort();
    const args = [serverMain, "--host", "127.0.0.1", "--port", String(port), "--without-connection-token", ...common];
    if (mode === "integration") {
        args.push("--enable-smoke-test-driver");
    }
    const serverLog = fs.openSync(path.join(data, `server-${mode}.log`), "w");
    // Its own process group (detached), so that stopping it takes every child with it.
    server = cp.spawn(node, args, { cwd: ws, env: process.env, detached: true, stdio: ["ignore", serverLog, serverLog] });
    // For the runner, which stops the group if it has to kill this driver.
    fs.writeFileSync(path.join(data, "server.pid"), String(server.pid));
    log(`VS Code server pid ${server.pid} on port ${port}`);
    const base = `http://127.0.0.1:${port}`;
    await waitUntil("the VS Code server to answer", () => httpOk(`${base}/`), 60_000);

    browser = await chromium.launch({
        executablePath: chromiumPath,
        headless: true,
        args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    });
    const page = await browser.newPage({ viewport: { width: 1400, height: 860 } });
    page.on("pageerror", (e) => log(`page error: ${e.message}`));
    if (mode === "integration") {
        return integration(page, base);
    }
    return ui(page, base);
}

async function integration(page, base) {
    const results = env("ORCH_VSCODE_RESULTS");
    let exit;
    const exited = new Promise((resolve) => {
        exit = resolve;
    });
    await page.exposeFunction("codeAutomationExit", (code) => exit(Number(code)));
    const remote = (p) => `vscode-remote://127.0.0.1:${base.split(":").pop()}${p}`;
    const payload = JSON.stringify([
        ["extensionDevelopmentPath", remote(ext)],
        ["extensionTestsPath", remote(path.join(ext, "out", "test", "index.js"))],
    ]);
    await page.goto(`${base}/?folder=${encodeURIComponent(ws)}&payload=${encodeURIComponent(payload)}`);
    log("workbench opened; waiting for the tests");
    const code = await Promise.race([
        exited,
        new Promise((resolve) => setTimeout(() => resolve("timeout"), (timeoutS - 20) * 1000)),
    ]);
    const transcript = fs.existsSync(results) ? fs.readFileSync(results, "utf8") : "(no transcript)";
    console.log(transcript);
    if (code !== 0) {
        await page.screenshot({ path: path.join(data, "integration-failure.png") }).catch(() => undefined);
        throw new Error(code === "timeout" ? "the tests did not finish in time" : `the tests exited with ${code}`);
    }
    log("the extension's tests passed");
}

/** The orch CLI in the workspace (another client of the same daemon). */
function orch(...args) {
    return cp.execFileSync(process.env.ORCH_BIN ?? "orch", args, { cwd: ws, encoding: "utf8", timeout: 30_000 });
}

async function runCommand(page, title) {
    await page.keyboard.press("F1");
    const input = page.locator(".quick-input-widget input");
    await input.waitFor({ state: "visible", timeout: 15_000 });
    await input.fill(`>${title}`);
    const row = page.locator(".quick-input-widget .monaco-list-row", { hasText: title }).first();
    await row.waitFor({ state: "visible", timeout: 15_000 });
    await page.keyboard.press("Enter");
}

async function pick(page, label) {
    const input = page.locator(".quick-input-widget input");
    await input.waitFor({ state: "visible", timeout: 15_000 });
    await input.fill(label);
    const row = page.locator(".quick-input-widget .monaco-list-row", { hasText: label }).first();
    await row.waitFor({ state: "visible", timeout: 15_000 });
    await page.keyboard.press("Enter");
}

async function agents() {
    const out = JSON.parse(orch("--json", "agent", "list"));
    return Array.isArray(out) ? out : out.items;
}

async function ui(page, base) {
    await page.goto(`${base}/?folder=${encodeURIComponent(ws)}`);
    log("workbench opened");
    // The extension's readiness signal: its status bar item, set once its client runs.
    const status = page.locator(".statusbar-item", { hasText: /^orch/ }).first();
    await status.waitFor({ state: "visible", timeout: 90_000 });
    log(`status bar: ${await status.innerText()}`);

    // Orch: Spawn Agent from the palette, then the kind from the quick pick.
    await runCommand(page, "Orch: Spawn Agent");
    await pick(page, "shell");
    // The workspace is a git repository: where should it work?
    await pick(page, "in the workspace folder");
    let shell;
    await waitUntil("orch agent list to show the spawned shell", async () => {
        shell = (await agents()).find((a) => a.kind === "shell");
        return shell !== undefined;
    }, 30_000);
    log(`spawned ${shell.name} (${shell.id}) from the palette`);
    await page.locator(".statusbar-item", { hasText: /^orch: 1 (idle|busy|running)/ }).first().waitFor({ timeout: 30_000 });

    // A decision: the notification's button answers it.
    const asker = JSON.parse(orch("--json", "agent", "spawn", "asker", "--name", "asker-ui"));
    const toast = page.locator(".notification-toast", { hasText: "asker-ui is waiting for an answer" }).first();
    await toast.waitFor({ state: "visible", timeout: 30_000 });
    log("the decision's notification is shown");
    await toast.getByRole("button", { name: "approve" }).click();
    await waitUntil("the decision to be resolved with approve", async () => {
        const resolved = JSON.parse(orch("call", "orch/decision/list", JSON.stringify({ state: "resolved" }))).items;
        return resolved.some((d) => d.source.id === asker.id && d.choice === "approve");
    }, 30_000);
    await waitUntil("the asker to get the answer", async () => orch("agent", "screen", asker.id).includes("answer=y"), 30_000);
    log("the notification's button resolved the decision");

    // Attach from the palette: the terminal shows the agent's output, and typing reaches it.
    orch("agent", "send", shell.id, "echo hello-from-orch-$((6*7))");
    await runCommand(page, "Orch: Attach to Agent");
    await pick(page, shell.name);
    const rows = page.locator(".terminal-wrapper .xterm-rows").first();
    await rows.waitFor({ state: "visible", timeout: 30_000 });
    await waitUntil("the agent's output in the terminal", async () => (await rows.innerText()).includes("hello-from-orch-42"), 30_000);
    log("the attached terminal shows the agent's output");
    // Focus the terminal's input (an overlay takes the pointer events over the rows).
    await page.locator(".terminal-wrapper .xterm-helper-textarea").first().focus();
    await page.keyboard.type("echo typed-in-vscode-$((7*6))");
    await page.keyboard.press("Enter");
    await waitUntil("the typed command's output in the terminal", async () => (await rows.innerText()).includes("typed-in-vscode-42"), 30_000);
    await waitUntil("the typed command on the daemon's screen", async () => orch("agent", "screen", shell.id).includes("typed-in-vscode-42"), 30_000);
    log("keys typed in the terminal reached the agent");

    // Orch: Send to Agent: the agent from a quick pick, the text from an input box.
    await runCommand(page, "Orch: Send to Agent");
    await pick(page, shell.name);
    const box = page.locator(".quick-input-widget input");
    await box.waitFor({ state: "visible", timeout: 15_000 });
    await box.fill("echo sent-from-palette-$((8*8))");
    await page.keyboard.press("Enter");
    await waitUntil("the sent text's output in the terminal", async () => (await rows.innerText()).includes("sent-from-palette-64"), 30_000);
    log("Orch: Send to Agent typed into the agent");

    // An agent in a git worktree, reviewed: Orch: Spawn Agent with "in a git worktree", then
    // Orch: Review Agent's Changes lists its files and opens one in VS Code's diff editor.
    await runCommand(page, "Orch: Spawn Agent");
    await pick(page, "editor");
    await pick(page, "in a git worktree");
    let editor;
    await waitUntil("the editor agent to change its three files", async () => {
        editor = (await agents()).find((a) => a.kind === "editor");
        return editor?.worktree && JSON.parse(orch("call", "orch/agent/diff", JSON.stringify({ id: editor.id }))).files.length === 3;
    }, 30_000);
    log(`spawned ${editor.name} in a worktree on ${editor.worktree.branch}`);
    // The agents view (the status bar item opens it) shows its branch and change count.
    await status.click();
    await page.locator(".monaco-list-row", { hasText: `${editor.worktree.branch} (3)` }).first().waitFor({ timeout: 30_000 });
    log(`the agents view shows ${editor.name} on ${editor.worktree.branch} with 3 changed files`);
    await runCommand(page, "Orch: Review Agent's Changes");
    await pick(page, editor.name);
    await page.locator(".quick-input-widget .monaco-list-row", { hasText: "deleted · +0 -1" }).first().waitFor({ timeout: 15_000 });
    await pick(page, "a.txt");
    const diffEditor = page.locator(".monaco-diff-editor").first();
    await diffEditor.waitFor({ state: "visible", timeout: 30_000 });
    const side = (which) => diffEditor.locator(`.editor.${which} .view-lines`).first();
    await waitUntil("the base on the left and the worktree's file on the right", async () => {
        const [left, right] = [await side("original").innerText(), await side("modified").innerText()];
        return /one\s+two/.test(left) && !left.includes("changed") && /one\s+two\s+changed/.test(right);
    }, 30_000);
    await page.locator(".tab", { hasText: "a.txt (main ↔ orch/" }).first().waitFor({ timeout: 15_000 });
    log("Orch: Review Agent's Changes opened a.txt in the diff editor: the base against the worktree's file");
    await page.keyboard.press("Escape");
    await runCommand(page, "View: Close All Editors");

    // Orch: Show Status: the daemon's status in a notification.
    await runCommand(page, "Orch: Show Status");
    await page.locator(".notification-toast", { hasText: /orch \S+ \(pid \d+\) serves / }).first().waitFor({ timeout: 15_000 });
    log("Orch: Show Status shows the daemon's status");

    const shot = process.env.ORCH_VSCODE_SHOT;
    if (shot) {
        await runCommand(page, "Notifications: Clear All Notifications");
        // A question waiting for an answer: its notification, the Decisions view, the status bar.
        orch("agent", "spawn", "asker", "--name", "asker-2");
        await page.locator(".notification-toast", { hasText: "asker-2 is waiting for an answer" }).first().waitFor({ timeout: 30_000 });
        await page.locator(".statusbar-item", { hasText: /^orch: .*· 1 decision/ }).first().waitFor({ timeout: 30_000 });
        // The orch views beside the terminal: the status bar item opens them.
        await status.click();
        await page.locator(".pane-header", { hasText: "Agents" }).first().waitFor({ timeout: 15_000 });
        await page.locator(".monaco-list-row", { hasText: shell.name }).first().waitFor({ timeout: 15_000 });
        await page.waitForTimeout(500);
        await page.screenshot({ path: shot });
        log(`screenshot: ${shot}`);
    }
}

const timer = setTimeout(() => {
    console.error(`driver: the ${mode} run took more than ${timeoutS} s`);
    stopServer();
    process.exit(1);
}, timeoutS * 1000);

try {
    await main();
    clearTimeout(timer);
    await browser?.close().catch(() => undefined);
    stopServer();
    process.exit(0);
} catch (e) {
    console.error(`driver: ${e?.stack ?? e}`);
    if (browser) {
        const pages = browser.contexts().flatMap((c) => c.pages());
        await pages[0]?.screenshot({ path: path.join(data, `${mode}-failure.png`) }).catch(() => undefined);
    }
    const serverLog = path.join(data, `server-${mode}.log`);
    if (fs.existsSync(serverLog)) {
        console.error(`--- VS Code server log (last 40 lines) ---\n${fs.readFileSync(serverLog, "utf8").split("\n").slice(-40).join("\n")}`);
    }
    clearTimeout(timer);
    await browser?.close().catch(() => undefined);
    stopServer();
    process.exit(1);
}
