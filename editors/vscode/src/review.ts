// Reviewing an agent's worktree: what `orch/agent/diff` says it changed against its base, as a
// list of files (status, lines added and deleted), each opened in VS Code's own diff editor. On
// the left the base version (`git show <mergeBase>:<path>` run in the worktree, served read-only
// under the `orch-base` scheme), on the right the worktree's real file (edits go to the agent's
// checkout). An added file has an empty left side, a deleted one an empty right side. While the
// worktree is paused (no checkout) the right side is the branch's version, read-only.
//
// Only the list comes from the daemon; file contents come from git and the file system.

import * as cp from "node:child_process";
import * as path from "node:path";
import * as vscode from "vscode";

import { Ctx } from "./ctx";
import * as lsp_ext from "./lsp_ext";

/** The scheme of the read-only sides: a file at a commit, or nothing. */
export const BASE_SCHEME = "orch-base";

/** What one read-only side holds (the query of its URI). */
type Side =
    | { kind: "git"; cwd: string; rev: string; path: string }
    | { kind: "empty" }
    | { kind: "binary" };

const STATUS_ICON: Record<lsp_ext.ChangedFile["status"], string> = {
    added: "diff-added",
    modified: "diff-modified",
    deleted: "diff-removed",
    renamed: "diff-renamed",
};

/** An item of the file list: a file, or every file at once. */
export interface FileItem extends vscode.QuickPickItem {
    file: lsp_ext.ChangedFile | undefined;
}

/** `git show <rev>:<path>` in `cwd`. */
function gitShow(cwd: string, rev: string, file: string): Promise<string> {
    return new Promise((resolve, reject) => {
        cp.execFile(
            "git",
            ["show", `${rev}:${file}`],
            { cwd, encoding: "utf8", maxBuffer: 64 * 1024 * 1024, timeout: 30_000 },
            (err, stdout, stderr) => {
                if (err) {
                    reject(new Error(stderr.trim() || err.message));
                } else {
                    resolve(stdout);
                }
            },
        );
    });
}

/** How a changed file reads in the list and in titles: `a.txt`, `old.txt → new.txt`. */
export function fileName(f: lsp_ext.ChangedFile): string {
    return f.oldPath ? `${f.oldPath} → ${f.path}` : f.path;
}

/** `+3 -1`, or `binary`. */
export function counts(f: lsp_ext.ChangedFile): string {
    return f.binary ? "binary" : `+${f.additions} -${f.deletions}`;
}

/** The items of the file list of a diff result: each file, then every file at once. */
export function fileItems(result: lsp_ext.DiffResult): FileItem[] {
    const added = result.files.reduce((n, f) => n + f.additions, 0);
    const deleted = result.files.reduce((n, f) => n + f.deletions, 0);
    const n = result.files.length;
    return [
        ...result.files.map((f) => ({
            label: `$(${STATUS_ICON[f.status] ?? "question"}) ${fileName(f)}`,
            description: `${f.status} · ${counts(f)}`,
            file: f,
        })),
        { label: "", kind: vscode.QuickPickItemKind.Separator, file: undefined },
        {
            label: "$(diff-multiple) All changes",
            description: `${n} file${n === 1 ? "" : "s"}, +${added} -${deleted}`,
            detail: "every file in one multi-diff editor",
            file: undefined,
        },
    ];
}

export class Review implements vscode.Disposable {
    /** The file list on screen, if any (for tests and for a second review of the same agent). */
    pick: vscode.QuickPick<FileItem> | undefined;
    /** The agent and diff the list shows. */
    shown: { agent: lsp_ext.Agent; result: lsp_ext.DiffResult } | undefined;
    private readonly disposables: vscode.Disposable[] = [];

    constructor(private readonly ctx: Ctx) {
        this.disposables.push(
            vscode.workspace.registerTextDocumentContentProvider(BASE_SCHEME, {
                provideTextDocumentContent: (uri) => this.content(uri),
            }),
        );
    }

    /** The text of a read-only side. A file git cannot show is empty, and a warning says why. */
    private async content(uri: vscode.Uri): Promise<string> {
        let side: Side;
        try {
            side = JSON.parse(uri.query) as Side;
        } catch {
            return "";
        }
        if (side.kind === "empty") {
            return "";
        }
        if (side.kind === "binary") {
            return "(binary file)\n";
        }
        try {
            return await gitShow(side.cwd, side.rev, side.path);
        } catch (e) {
            void this.ctx.show("warning", `orch: cannot show ${side.path} at ${side.rev.slice(0, 12)}: ${(e as Error).message}`, []);
            return "";
        }
    }

    /** A read-only side: `orch-base:/<agent>/<label>/<path>` (the path gives the language). */
    private sideUri(agent: lsp_ext.Agent, label: string, file: string, side: Side): vscode.Uri {
        return vscode.Uri.from({
            scheme: BASE_SCHEME,
            path: `/${agent.name}/${label}/${file}`,
            query: JSON.stringify(side),
        });
    }

    /** The two sides of a changed file. */
    sides(agent: lsp_ext.Agent, result: lsp_ext.DiffResult, f: lsp_ext.ChangedFile): { left: vscode.Uri; right: vscode.Uri } {
        const top = result.path;
        const cwd = top ?? this.ctx.root;
        const old = f.oldPath ?? f.path;
        const baseLabel = result.mergeBase.slice(0, 12);
        let left: vscode.Uri;
        if (f.binary) {
            left = this.sideUri(agent, baseLabel, old, { kind: "binary" });
        } else if (f.status === "added") {
            left = this.sideUri(agent, baseLabel, old, { kind: "empty" });
        } else {
            left = this.sideUri(agent, baseLabel, old, { kind: "git", cwd, rev: result.mergeBase, path: old });
        }
        let right: vscode.Uri;
        if (f.status === "deleted") {
            right = this.sideUri(agent, result.branch, f.path, { kind: "empty" });
        } else if (top) {
            right = vscode.Uri.file(path.join(top, f.path));
        } else if (f.binary) {
            right = this.sideUri(agent, result.branch, f.path, { kind: "binary" });
        } else {
            // Paused: no checkout; the branch holds everything (pausing committed it).
            right = this.sideUri(agent, result.branch, f.path, { kind: "git", cwd, rev: result.branch, path: f.path });
        }
        return { left, right };
    }

    /** Open one file in the diff editor. */
    async showFile(agent: lsp_ext.Agent, result: lsp_ext.DiffResult, f: lsp_ext.ChangedFile, preserveFocus = false): Promise<void> {
        const { left, right } = this.sides(agent, result, f);
        const title = `${fileName(f)} (${result.base} ↔ ${result.branch})`;
        await vscode.commands.executeCommand("vscode.diff", left, right, title, { preview: true, preserveFocus });
    }

    /** Every file in one multi-diff editor. */
    async showAll(agent: lsp_ext.Agent, result: lsp_ext.DiffResult): Promise<void> {
        const resources = result.files.map((f) => {
            const { left, right } = this.sides(agent, result, f);
            return [f.status === "deleted" ? left : right, left, right];
        });
        await vscode.commands.executeCommand("vscode.changes", `${agent.name}: ${result.branch} against ${result.base}`, resources);
    }

    /**
     * Show `result` (the agent's diff): `file` (a path) at once when given, else the list of
     * files; accepting one opens it, the list staying open for the next (Esc closes it).
     */
    async open(agent: lsp_ext.Agent, result: lsp_ext.DiffResult, file?: string): Promise<void> {
        if (file !== undefined) {
            const f = result.files.find((x) => x.path === file || x.oldPath === file);
            if (!f) {
                void this.ctx.show("warning", `orch: ${file} is not among the files ${agent.name} changed against ${result.base}`, []);
                return;
            }
            await this.showFile(agent, result, f);
            return;
        }
        this.pick?.dispose();
        const pick = vscode.window.createQuickPick<FileItem>();
        this.pick = pick;
        this.shown = { agent, result };
        pick.title = `orch: review ${agent.name}: ${result.branch} against ${result.base} at ${result.mergeBase.slice(0, 12)}`;
        pick.placeholder = "a file to compare with the base (the list stays open; Esc closes it)";
        pick.matchOnDescription = true;
        const refresh: vscode.QuickInputButton = { iconPath: new vscode.ThemeIcon("refresh"), tooltip: "Ask for the diff again" };
        const merge: vscode.QuickInputButton = { iconPath: new vscode.ThemeIcon("git-merge"), tooltip: "Merge into its base…" };
        pick.buttons = [refresh, merge];
        const fill = (r: lsp_ext.DiffResult): void => {
            pick.items = fileItems(r);
            if (r.truncated) {
                pick.placeholder = "a file to compare with the base (the patch was cut at 4 MiB; every file is listed)";
            }
        };
        fill(result);
        pick.onDidAccept(() => {
            const item = pick.activeItems[0] ?? pick.selectedItems[0];
            const shown = this.shown;
            if (!item || !shown) {
                return;
            }
            const opened = item.file ? this.showFile(shown.agent, shown.result, item.file, true) : this.showAll(shown.agent, shown.result);
            opened.then(undefined, (e: unknown) => this.ctx.showError(`orch: review: ${(e as Error).message}`));
        });
        pick.onDidTriggerButton(async (b) => {
            if (b === merge) {
                pick.hide();
                await vscode.commands.executeCommand("orch.merge", agent);
                return;
            }
            pick.busy = true;
            try {
                const r = await this.ctx.request(lsp_ext.agentDiff, { id: agent.id });
                if (this.pick === pick) {
                    this.shown = { agent, result: r };
                    fill(r);
                }
            } catch (e) {
                this.ctx.showError(`orch: diff: ${(e as Error).message}`);
            } finally {
                pick.busy = false;
            }
        });
        pick.onDidHide(() => {
            if (this.pick === pick) {
                this.pick = undefined;
            }
            pick.dispose();
        });
        pick.show();
    }

    dispose(): void {
        this.pick?.dispose();
        for (const d of this.disposables) {
            d.dispose();
        }
    }
}
