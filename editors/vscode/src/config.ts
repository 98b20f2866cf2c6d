// Typed settings of the extension, and a way to hear that one changed. The only setting is
// `orch.path`; when it changes the context restarts its client with the new binary.

import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";

export class Config {
    private readonly emitter = new vscode.EventEmitter<void>();
    /** Fires after `orch.*` settings changed. */
    readonly onDidChange = this.emitter.event;
    private readonly listener: vscode.Disposable;

    constructor() {
        this.listener = vscode.workspace.onDidChangeConfiguration((e) => {
            if (e.affectsConfiguration("orch")) {
                this.emitter.fire();
            }
        });
    }

    /** `orch.path` as the user wrote it: a name looked up on PATH, or a path. */
    get path(): string {
        const p = vscode.workspace.getConfiguration("orch").get<string>("path", "orch").trim();
        return p === "" ? "orch" : p;
    }

    dispose(): void {
        this.listener.dispose();
        this.emitter.dispose();
    }
}

/**
 * The executable `orch.path` names, resolved the way a shell would (a name on `PATH`, a path
 * relative to `cwd`, `~/` expanded), or undefined when there is none. Checked before starting
 * the client so that a missing binary gets a clear message instead of a spawn error.
 */
export function resolveExecutable(configured: string, cwd: string, env: NodeJS.ProcessEnv): string | undefined {
    let p = configured;
    if (p.startsWith("~/")) {
        p = path.join(env.HOME ?? "", p.slice(2));
    }
    const candidates = p.includes("/")
        ? [path.resolve(cwd, p)]
        : (env.PATH ?? "").split(path.delimiter).filter((d) => d !== "").map((d) => path.join(d, p));
    return candidates.find((c) => {
        try {
            const st = fs.statSync(c);
            fs.accessSync(c, fs.constants.X_OK);
            return st.isFile();
        } catch {
            return false;
        }
    });
}
