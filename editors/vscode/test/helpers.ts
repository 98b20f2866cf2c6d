// What the integration tests share: waiting, the orch CLI as another client of the same daemon,
// the extension's API, and the agents view's rows as a person reads them.

import * as assert from "node:assert/strict";
import * as cp from "node:child_process";
import * as vscode from "vscode";

import type { Api } from "../src/main";

export const EXTENSION_ID = "orch.orch";

export function workspace(): string {
    const f = vscode.workspace.workspaceFolders?.[0];
    assert.ok(f, "the test workspace is open");
    return f.uri.fsPath;
}

/** Poll `f` until it returns something other than undefined/false. */
export async function waitFor<T>(what: string, f: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
        try {
            const v = await f();
            if (v !== undefined && v !== false) {
                return v;
            }
        } catch (e) {
            last = e;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`);
        }
        await new Promise((r) => setTimeout(r, 100));
    }
}

/** The orch CLI, as another client of the same daemon. */
export function orch(...args: string[]): string {
    return cp.execFileSync(process.env.ORCH_BIN ?? "orch", args, { cwd: workspace(), encoding: "utf8", timeout: 30_000 });
}

export function orchJson<T>(...args: string[]): T {
    return JSON.parse(orch("--json", ...args)) as T;
}

export function call<T>(method: string, params: object = {}): T {
    return JSON.parse(orch("call", method, JSON.stringify(params))) as T;
}

export async function api(): Promise<Api> {
    const ext = vscode.extensions.getExtension<Api>(EXTENSION_ID);
    assert.ok(ext, `extension ${EXTENSION_ID} is installed`);
    // Activated by `workspaceContains:orch.toml`, not by this test.
    await waitFor("the extension to be activated by orch.toml", () => ext.isActive, 60_000);
    return ext.exports;
}

export function ctxOf(a: Api) {
    assert.ok(a.ctx, "the extension has a context for the workspace folder");
    return a.ctx;
}

/** The agents view's rows as a person reads them: `name: description`. */
export function agentRows(a: Api): string[] {
    const views = a.views;
    assert.ok(views);
    return views.agents.getChildren().map((agent) => {
        const item = views.agents.getTreeItem(agent);
        return `${String(item.label)}: ${String(item.description)}`;
    });
}
